"""Companion spectra for the oracle detector: for a SIMULATED atmosphere and each gas, the TauREx
spectrum of the *same* atmosphere with that gas toggled — removed where it is present, added at its
latent abundance (:attr:`astrobio_lib.data.gas_spectra.GasSpectra.latent`) where it is absent.

With the noiseless spectrum and its companion, a detector that knows every parameter except whether
the gas is there computes the exact likelihood ratio of the two hypotheses
(the oracle of the gas-detection task): the physical limit of detection for that noise.

Cached in the spectra store, content-addressed (``<store>/v1/companions/<sha256>.npz``: the key hashes
the planet's catalog values, the atmosphere, the latent abundances and the generator identity), one
file per atmosphere holding its 5 companions, published atomically with a sha256 beside it and checked
on every read; computed by the store's Dask runner in a child process (no ``__main__`` guard needed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from astrobio_lib.data import spectra_store as st
from astrobio_lib.data import transmission as tx
from astrobio_lib.train.preemption import Preemption

log = logging.getLogger("astrobio.spectra")

FOLDER = "companions"


def atmosphere(ds, r: int) -> dict[str, Any]:
    """The truth of spectrum ``r`` of a set as an atmosphere dict (:class:`~astrobio_lib.data.transmission.Atmosphere`)."""
    vmr = {g: float(ds.log10_vmr[r, k]) for k, g in enumerate(tx.GASES) if ds.present[r, k]}
    cloud = ds.log10_cloud_top_pa[r]
    return {"temperature_k": float(ds.temperature_k[r]), "surface_pressure_pa": float(10 ** ds.log10_surface_pressure_pa[r]),
            "log10_vmr": vmr, "cloud_top_pa": float(10 ** cloud) if np.isfinite(cloud) else None}


def toggled(atm: dict[str, Any], gas: str, latent_log10_vmr: float) -> tx.Atmosphere:
    """``atm`` without ``gas`` if it has it, else with it at ``latent_log10_vmr``."""
    vmr = dict(atm["log10_vmr"])
    if gas in vmr:
        del vmr[gas]
    else:
        vmr[gas] = float(latent_log10_vmr)
    return tx.Atmosphere(atm["temperature_k"], atm["surface_pressure_pa"], vmr, atm["cloud_top_pa"])


def key(row: dict[str, Any], atm: dict[str, Any], latent: Sequence[float], identity: dict[str, Any]) -> str:
    payload = {"planet": st.planet_record(row), "atmosphere": atm, "latent": [round(float(v), 12) for v in latent],
               "identity": identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def compute(row: dict[str, Any], atm: dict[str, Any], latent: Sequence[float]) -> dict[str, np.ndarray]:
    """The companions of one atmosphere: ``depth`` [gases, bins] (TauREx, binned like the set)."""
    tx.quiet_taurex()
    star, planet = tx.bodies_from_row(row)
    return {"depth": np.stack([tx.spectrum(star, planet, toggled(atm, g, latent[k]))[1] for k, g in enumerate(tx.GASES)])}


class Cache:
    """The companions folder of a store."""

    def __init__(self, store: Optional[str | Path] = None):
        self.folder = st.SpectraStore(store).base / FOLDER

    def path(self, k: str) -> Path:
        return self.folder / f"{k}.npz"

    def has(self, k: str) -> bool:
        p = self.path(k)
        return p.is_file() and p.with_name(p.name + ".sha256").is_file()

    def read(self, k: str) -> np.ndarray:
        """The companions under key ``k``, their sha256 checked.

        Raises:
            StoreCorrupt: missing or corrupt (named; the next :func:`ensure` regenerates it).
        """
        return st.read_chunk(self.path(k))["depth"]

    def write(self, k: str, arrays: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        st.publish_npz(self.path(k), {"depth": arrays["depth"]}, kept="the other companions are unchanged")


def ensure(ds, rows: Sequence[int], store: Optional[str | Path] = None, workers: int = -1,
           scheduler: Optional[str] = None, progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """Returns the companions [len(rows), gases, bins] of spectra ``rows`` of set ``ds``, computing the
    ones the cache lacks (or holds corrupt) first — ``workers`` LocalCluster processes (-1 every core,
    0 this process) or the Dask ``scheduler``.

    Raises:
        spectra_store.GenerationInterrupted: SIGTERM / SIGINT during the computation (finished ones kept).
    """
    cache = Cache(store)
    identity = st.generator_identity()
    planets = ds.planets.to_dict("records")
    latent = ds.latent
    items = []
    for r in rows:
        atm = atmosphere(ds, int(r))
        row = st.planet_record(planets[int(ds.planet[r])])
        items.append({"key": key(row, atm, latent[r, :len(tx.GASES)], identity), "row": row, "atmosphere": atm,
                      "latent": [float(v) for v in latent[r, :len(tx.GASES)]]})
    todo = []
    for it in items:
        if cache.has(it["key"]):
            problem = st.verified(cache.path(it["key"]))
            if problem is None:
                continue
            log.warning("companion spectra %s %s: deleted, they will be recomputed", cache.path(it["key"]), problem)
            cache.path(it["key"]).unlink(missing_ok=True)
        todo.append(it)
    if todo:
        log.info("oracle companions: %d of %d atmospheres to simulate (%d TauREx spectra)", len(todo), len(items),
                 len(todo) * len(tx.GASES))
        job = {"kind": "companions", "items": todo, "store": str(st.SpectraStore(store).root), "workers": workers,
               "scheduler": scheduler}
        if workers == 0 and not scheduler:
            run_job(job, progress)
        else:
            st.run_child(job, progress, module=__name__)
    elif progress:
        progress(len(items), len(items))
    return np.stack([cache.read(it["key"]) for it in items]) if items else np.zeros((0, len(tx.GASES), 0))


def run_job(job: dict[str, Any], progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Computes a companions job (here or as Dask tasks, as :func:`~astrobio_lib.data.spectra_store.run_tasks`);
    publishes each atmosphere's companions as it finishes; returns the statistics."""
    cache = Cache(job["store"])
    items = job["items"]
    stats = st.GenerationStats(spectra_total=len(items) * len(tx.GASES))
    reporter = st._Reporter(len(items) * len(tx.GASES), progress)
    t0 = time.monotonic()

    def publish(k: int, arrays: dict[str, np.ndarray]) -> None:
        cache.write(items[k]["key"], arrays)
        st._count(stats, reporter, len(tx.GASES), t0)

    with Preemption() as stop, st.SpectraStore(job["store"]).lock():
        st.run_tasks([(compute, (it["row"], it["atmosphere"], it["latent"])) for it in items], publish,
                     job["workers"], job["scheduler"], stats, stop)
    stats.seconds = time.monotonic() - t0
    if stop.requested:
        raise st.GenerationInterrupted(f"companion spectra stopped by {stop.reason} ({stats.chunks_generated} "
                                       f"atmospheres kept): run the same command again to compute only what is missing")
    log.info("oracle companions: %d spectra in %.1f s (%.2f spectra/s, %s)", stats.spectra_generated, stats.seconds,
             stats.spectra_per_s, stats.engine)
    return stats.to_dict()


def main(argv=None) -> int:
    """The child process of :func:`ensure` (``run-job JOB.json``)."""
    return st.job_main(argv, run_job, "python -m astrobio_lib.data.companions")


if __name__ == "__main__":
    sys.exit(main())
