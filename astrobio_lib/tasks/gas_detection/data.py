"""The gas-detection task's data: what notebook 01 prepares (the SIMULATED spectra of the rocky planets
JWST could best characterise, the circularity check, the host split) and what the trainer opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.tasks.spec import DataInfo, DataNotBuilt, DataReport, TaskData

SPECTRA_DIR = "gas_spectra"
CIRCULARITY_LIMIT = 0.65  # catalog-only AUROC above this for any gas: a target leaks into an input


def spectra_dir(data_dir: Path) -> Path:
    return Path(data_dir) / SPECTRA_DIR


def prepare(cfg, planets, provenance, data_dir: Path,
            progress: Optional[Callable[[int, int], None]] = None) -> DataReport:
    """Generates (or reuses) the SIMULATED spectra of ``cfg.data.gas_planets`` rocky planets x
    ``gas_atmospheres`` drawn atmospheres in ``data_dir/gas_spectra``, runs the circularity check and
    splits by host star; returns the data verdict and what 01 shows."""
    from astrobio_lib.tasks.gas_detection.baselines import circularity_check
    from astrobio_lib.tasks.gas_detection.dataset import split

    from astrobio_lib.data.spectra_store import scheduler_address

    rocky = gs.rocky_planets(planets, cfg.data.gas_planets)
    ds, cached = gs.build_or_load(spectra_dir(data_dir), rocky, cfg.data.gas_atmospheres, cfg.run.seed,
                                  progress=progress, catalog=provenance.to_dict(), store=cfg.data.spectra_store,
                                  scheduler=scheduler_address(cfg.data.dask_scheduler))
    circularity = circularity_check(ds, cfg.run.seed)
    which = split(ds, cfg.run.seed)
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
    return DataReport(status, headline, {"spectra": ds, "cached": cached, "circularity": circularity,
                                         "split": which, "hosts": hosts, "seed": cfg.run.seed})


def _load(data_dir: Path) -> gs.GasSpectra:
    try:
        return gs.load(spectra_dir(data_dir))
    except FileNotFoundError as exc:
        raise DataNotBuilt(f"the gas-detection task needs the SIMULATED spectra in {spectra_dir(data_dir)}: run "
                           f"01_data_validation for this run first (python -m astrobio_lib.pipeline PARAMS --only 01)"
                           f" with gas_planets > 0") from exc


def built_with(manifest: dict[str, Any]) -> dict[str, Any]:
    """The configuration values a generated set was made with (its manifest)."""
    return {"gas_planets": manifest.get("n_planets"), "gas_atmospheres": manifest.get("atmospheres_per_planet")}


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
    """The training and validation items: noisy draws (``gas_train_draws`` per noiseless spectrum and
    number of transits for training, a quarter of that for validation) of the split's spectra.

    Raises:
        DataNotBuilt: no generated spectra.
    """
    from astrobio_lib.tasks.gas_detection.dataset import GasDetectionDataset, collate, split

    ds = _load(data_dir)
    which = split(ds, cfg.run.seed)
    draws = cfg.train.gas_train_draws
    train = GasDetectionDataset(ds, which, "train", draws, cfg.run.seed)
    val = GasDetectionDataset(ds, which, "val", max(1, draws // 4), cfg.run.seed)
    synthetic = bool(ds.manifest.get("catalog", {}).get("synthetic", False))
    return TaskData(train, val, collate, key=ds.manifest["cache_key"], text_len=0, synthetic=synthetic,
                    built_with=built_with(ds.manifest),
                    description=f"{len(ds.depth)} SIMULATED spectra; {len(train)} training items "
                                f"({draws} noise draws x {len(train.transits)} transit counts)")
