"""TauREx spectrum generation through the spectra store (issue 24): spectra/s for 1 and 2 Dask workers
(a LocalCluster), the first-spectrum latency, the scaling efficiency, and what that means for 1e4 /
1e5 / 1e6 spectra on a 16-core pod and on an N-worker cluster.

Each measurement generates ``--planets`` real rocky planets x ``--atmospheres`` atmospheres into a
fresh, empty store (nothing is reused), through the same path notebook 01 uses
(:func:`astrobio_lib.data.spectra_store.run_generation`: a child process driving the cluster; the
worker start and TauREx's table loading are part of the wall time, as for a user). The projections
use the measured per-worker rate once the workers run (chunks after the first), which is what a long
generation sees; they assume workers scale as measured here from 1 to 2 (the efficiency printed).

Usage: .venv/bin/python benchmarks/spectra_generation.py [--planets 8] [--atmospheres 8] [--workers 1 2]
Time it when the machine is otherwise quiet (its load is printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from astrobio_lib.data import catalog
from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import spectra_store as st


def measure(rows, atmospheres: int, workers: int) -> dict:
    """Generates into an empty store; returns wall time, first-chunk latency and steady rate."""
    with tempfile.TemporaryDirectory() as tmp:
        store = st.SpectraStore(tmp)
        marks = []
        t0 = time.perf_counter()
        stats = st.run_generation(rows.to_dict("records"), atmospheres, 0, store, workers=workers,
                                  progress=lambda done, total: marks.append((time.perf_counter() - t0, done)))
        wall = time.perf_counter() - t0
    first_t, first_n = marks[0]
    steady = (marks[-1][1] - first_n) / max(marks[-1][0] - first_t, 1e-9) if len(marks) > 1 else float("nan")
    return {"workers": workers, "spectra": stats.spectra_generated, "wall_s": wall, "first_s": first_t,
            "steady_per_s": steady, "overall_per_s": stats.spectra_generated / wall}


def duration(seconds: float) -> str:
    """``seconds`` as minutes below an hour, else hours."""
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planets", type=int, default=8)
    ap.add_argument("--atmospheres", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    planets, prov = catalog.load_catalog("snapshot")
    print(prov.banner())
    print(f"machine: {os.cpu_count()} cores, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(before the runs)")
    rows = gs.rocky_planets(planets, args.planets)
    results = [measure(rows, args.atmospheres, w) for w in args.workers]
    print(f"\n{'workers':>7} {'spectra':>8} {'wall s':>7} {'first spectra after s':>22} {'steady spectra/s':>17} "
          f"{'overall spectra/s':>18}")
    for r in results:
        print(f"{r['workers']:>7} {r['spectra']:>8} {r['wall_s']:>7.1f} {r['first_s']:>22.1f} {r['steady_per_s']:>17.2f} "
              f"{r['overall_per_s']:>18.2f}")
    one = next((r for r in results if r["workers"] == 1), results[0])
    per_worker = one["steady_per_s"] / one["workers"]
    for r in results:
        if r is not one:
            eff = r["steady_per_s"] / (r["workers"] * per_worker)
            print(f"scaling efficiency 1 -> {r['workers']} workers (steady rate): {100 * eff:.0f}%")
    print(f"\nper-worker steady rate: {per_worker:.2f} spectra/s; projected wall time (startup "
          f"~{one['first_s']:.0f} s not included):")
    for n in (1e4, 1e5, 1e6):
        cells = [f"{duration(n / (w * per_worker))} on {w} workers" for w in (16, 64, 256)]
        print(f"  {int(n):>9,} spectra: " + "; ".join(cells))
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
