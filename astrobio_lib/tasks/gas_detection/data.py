"""The gas-detection task's data: what notebook 01 prepares (the SIMULATED spectra of the rocky planets
JWST could best characterise, the circularity check, the host split) and what the trainer opens."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.tasks.spec import DataInfo, DataNotBuilt, DataReport, TaskData

SPECTRA_DIR = "gas_spectra"
CIRCULARITY_LIMIT = 0.65  # catalog-only AUROC above this for any gas: a target leaks into an input


def spectra_dir(data_dir: Path) -> Path:
    return Path(data_dir) / SPECTRA_DIR


@functools.lru_cache(maxsize=2)
def hosts_in_snapshot(saturation: str = "exclude") -> int:
    """Host stars of the shipped catalog with a rocky planet the simulation can use (counted once)."""
    from astrobio_lib.data import catalog

    planets, _ = catalog.load_snapshot()
    return len(gs.eligible(planets, saturation))


def select(cfg, planets):
    """The ``gas_planets`` rocky planets of the set (:func:`gas_spectra.rocky_planets`).

    Raises:
        ValueError: the catalog has fewer such host stars, naming ``gas_planets`` and the most it can be.
    """
    try:
        return gs.rocky_planets(planets, cfg.data.gas_planets, cfg.data.saturation)
    except ValueError as exc:
        raise ValueError(f"gas_planets: {cfg.data.gas_planets}: {exc} — lower gas_planets to at most "
                         f"{len(gs.eligible(planets, cfg.data.saturation))}") from exc


def prepare(cfg, planets, provenance, data_dir: Path,
            progress: Optional[Callable[[int, int], None]] = None) -> DataReport:
    """Generates (or reuses) the SIMULATED spectra of ``cfg.data.gas_planets`` rocky planets x
    ``gas_atmospheres`` drawn atmospheres in ``data_dir/gas_spectra``, runs the circularity check and
    splits by host star; returns the data verdict and what 01 shows."""
    from astrobio_lib.data.spectra_store import scheduler_address
    from astrobio_lib.tasks.gas_detection.baselines import circularity_check
    from astrobio_lib.tasks.gas_detection.dataset import split

    rocky = select(cfg, planets)
    ds, cached = gs.build_or_load(spectra_dir(data_dir), rocky, cfg.data.gas_atmospheres, cfg.run.seed,
                                  progress=progress, catalog=provenance.to_dict(), store=cfg.data.spectra_store,
                                  workers=cfg.data.simulation_workers,
                                  scheduler=scheduler_address(cfg.data.dask_scheduler),
                                  saturation=gs.saturation_record(planets, rocky, cfg.data.saturation))
    circularity = circularity_check(ds, cfg.run.seed)
    which = split(ds, cfg.run.seed)
    # the oracle's companion spectra of the test atmospheres (04 draws the detection ceiling from them)
    from astrobio_lib.data import companions

    companions.ensure(ds, np.flatnonzero(which == "test"), store=cfg.data.spectra_store,
                      workers=cfg.data.simulation_workers, scheduler=scheduler_address(cfg.data.dask_scheduler))
    hosts = {s: int(len(np.unique(ds.hostname[which == s]))) for s in ("train", "val", "test")}
    leaked = max(circularity.values())
    empty = [s for s, n in hosts.items() if n == 0]
    status = "FAIL" if leaked > CIRCULARITY_LIMIT or empty else "WARN" if provenance.synthetic else "PASS"
    headline = (f"{len(ds.depth)} SIMULATED spectra ({cfg.data.gas_planets} "
                f"{'SYNTHETIC' if provenance.synthetic else 'real'} rocky planets x {cfg.data.gas_atmospheres} drawn "
                f"atmospheres, TauREx {ds.manifest['opacities']['taurex']}); host stars train/val/test "
                f"{hosts['train']}/{hosts['val']}/{hosts['test']}; catalog-only AUROC at most {leaked:.2f} "
                f"(circularity check, ~0.5 expected)"
                + (f"; empty split(s): {', '.join(empty)} — raise gas_planets" if empty else "")
                + (f" — above {CIRCULARITY_LIMIT}: a target leaks into an input" if leaked > CIRCULARITY_LIMIT else ""))
    action = ("" if status == "PASS" else
              f"raise gas_planets (an empty split: {', '.join(empty)})" if empty else
              "a catalog column predicts a gas: check astrobio_lib/data/gas_spectra.CATALOG_FEATURES for a leak"
              if leaked > CIRCULARITY_LIMIT else
              "the catalog is SYNTHETIC: set catalog_source: snapshot (the shipped real catalog) or auto")
    return DataReport(status, headline, next_action=action,
                      details={"spectra": ds, "cached": cached, "circularity": circularity, "split": which,
                               "hosts": hosts, "seed": cfg.run.seed, "noise_floor": cfg.data.noise_floor})


def planned_key(cfg, planets, provenance) -> str:
    """The identity of the set ``prepare`` would link (its planets' store entries and the atmospheres
    per planet), computed without generating anything."""
    from astrobio_lib.data import spectra_store as st

    identity = st.generator_identity()
    rows = select(cfg, planets).to_dict("records")
    return gs.set_key([st.planet_key(r, cfg.run.seed, identity) for r in rows], cfg.data.gas_atmospheres)


def check(cfg, data_dir: Path) -> Optional[str]:
    """Why the run's set does not verify (missing, or a file or chunk that does not match its sha256),
    or None: every chunk is read and checked."""
    from astrobio_lib.data import spectra_store as st

    try:
        depth = gs.load(spectra_dir(data_dir)).depth  # the set's own files are checked as it loads
        for c in getattr(depth, "chunks", ()):  # the store's chunks one at a time, never the whole set in memory
            st.read_chunk(Path(c["path"]), c["sha256"])
    except (FileNotFoundError, st.StoreCorrupt) as exc:  # SpectraCorrupt is a StoreCorrupt
        return str(exc)
    return None


def _load(data_dir: Path) -> gs.GasSpectra:
    try:
        return gs.load(spectra_dir(data_dir))
    except FileNotFoundError as exc:
        raise DataNotBuilt(f"the gas-detection task needs the SIMULATED spectra in {spectra_dir(data_dir)}: run "
                           f"01_data_validation for this run first (python -m astrobio_lib.pipeline PARAMS --only 01)"
                           f" with gas_planets > 0") from exc


def built_with(manifest: dict[str, Any]) -> dict[str, Any]:
    """The configuration values a generated set was made with (its manifest): recorded in checkpoints
    and train_params.yaml instead of a notebook's defaults."""
    out = {"gas_planets": manifest.get("n_planets"), "gas_atmospheres": manifest.get("atmospheres_per_planet")}
    if manifest.get("saturation"):
        out["saturation"] = manifest["saturation"]["mode"]
    source = manifest.get("catalog", {}).get("source")
    if source:  # the source the catalog really came from (auto resolves to one of these)
        out["catalog_source"] = source
    return out


def info(cfg, data_dir: Path) -> DataInfo:
    """The key and description of the run's spectra, from their manifest (no array loaded).

    Raises:
        DataNotBuilt: no generated spectra.
    """
    import json

    path = spectra_dir(data_dir) / "manifest.json"
    if not path.is_file():
        _load(data_dir)  # raises the named error
    manifest = json.loads(path.read_text())
    return DataInfo(key=manifest["cache_key"], text_len=0, built_with=built_with(manifest),
                    description=f"{manifest['n_spectra']} SIMULATED spectra ({manifest['n_planets']} planets x "
                                f"{manifest['atmospheres_per_planet']} atmospheres), key {manifest['cache_key'][:12]}")


def open_train_val(cfg, data_dir: Path) -> TaskData:
    """The training and validation items: training items with fresh noise at every use
    (``gas_train_draws`` items per noiseless spectrum and epoch, N log-uniform over 1-100), fixed
    validation draws (a quarter of ``gas_train_draws``, at least one, per noiseless spectrum and N of
    :data:`~astrobio_lib.tasks.gas_detection.dataset.TRANSITS`), noise floor ``noise_floor``.

    Raises:
        DataNotBuilt: no generated spectra.
    """
    from astrobio_lib.tasks.gas_detection.dataset import GasDetectionDataset, collate, split

    ds = _load(data_dir)
    which = split(ds, cfg.run.seed)
    draws = cfg.train.gas_train_draws
    floor = cfg.data.noise_floor
    train = GasDetectionDataset(ds, which, "train", draws, cfg.run.seed, floor=floor, fresh=True)
    val = GasDetectionDataset(ds, which, "val", max(1, draws // 4), cfg.run.seed, floor=floor)
    synthetic = bool(ds.manifest.get("catalog", {}).get("synthetic", False))
    return TaskData(train, val, collate, key=ds.manifest["cache_key"], text_len=0, synthetic=synthetic,
                    built_with=built_with(ds.manifest),
                    description=f"{len(ds.depth)} SIMULATED spectra; {len(train)} training items per epoch "
                                f"({draws} per noiseless spectrum, fresh {floor}-floor noise and N = 1-100 "
                                f"transits at every use)")
