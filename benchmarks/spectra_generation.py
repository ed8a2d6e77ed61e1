"""TauREx transmission-spectrum generation rate (issue 14): spectra/s on this machine.

Generates SIMULATED JWST NIRSpec PRISM spectra (:mod:`astrobio_lib.data.gas_spectra`) for
``--planets`` real rocky planets x ``--atmospheres`` drawn atmospheres on ``--processes`` worker
processes (default: every core) and prints the wall time, the one-off opacity loading per process
(measured in one process first) and spectra/s. Nothing is cached.

Usage: .venv/bin/python benchmarks/spectra_generation.py [--planets 40] [--atmospheres 4] [--processes N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time

from astrobio_lib.data import catalog
from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import transmission as tx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planets", type=int, default=40)
    ap.add_argument("--atmospheres", type=int, default=4)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    planets, prov = catalog.load_catalog("auto", os.environ.get("ASTROBIO_CATALOG"))
    print(prov.banner())
    sel = gs.rocky_planets(planets, args.planets)
    star, planet = tx.bodies_from_row(sel.iloc[0].to_dict())
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        tx.spectrum(star, planet, tx.Atmosphere(288.0, 1e5, {"CO2": -3.0}))
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(5):
            tx.spectrum(star, planet, tx.Atmosphere(288.0, 1e5, {"CO2": -3.0, "H2O": -3.0}))
        one = (time.perf_counter() - t0) / 5
    print(f"one process: first spectrum {load:.1f} s (loads the 5 cross-section tables), then {one * 1e3:.0f} ms "
          f"per spectrum ({1 / one:.1f} spectra/s)")
    ds = gs.generate(sel, args.atmospheres, seed=0, processes=args.processes)
    g = ds.manifest["generation"]
    print(f"{ds.depth.shape[0]} spectra ({args.planets} planets x {args.atmospheres} atmospheres, "
          f"{ds.depth.shape[1]} bins) on {g['processes']} processes: {g['seconds']:.1f} s wall, "
          f"{g['spectra_per_s']:.2f} spectra/s (including each process's table loading)")


if __name__ == "__main__":
    main()
