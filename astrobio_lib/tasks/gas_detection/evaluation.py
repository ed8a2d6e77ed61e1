"""The gas-detection task's evaluation (notebook 04): the run's best checkpoint on the test host stars
of its SIMULATED spectra, against the baselines on the same noisy draws."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from astrobio_lib.evaluate import load_model
from astrobio_lib.tasks.gas_detection import NAME
from astrobio_lib.tasks.gas_detection import baselines as bl
from astrobio_lib.tasks.gas_detection.data import _load, spectra_dir
from astrobio_lib.tasks.gas_detection.dataset import (
    RETRIEVAL_TARGETS,
    GasDetectionDataset,
    retrieval_truth,
    split,
)
from astrobio_lib.tasks.spec import Evaluation


def evaluate_gas_run(run_dir: str | Path, draws: int = 4, bootstrap: int = 100, seed: int = 0,
                     progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Evaluates a run of the gas-detection task on the test host stars of its SIMULATED spectra:
    detection curves of the model and the three baselines on the same noisy draws, the verdict per
    gas and N against full-spectrum gradient boosting, retrieval R² / RMSE / interval coverage, and
    the interval calibration curve. Writes ``gas_detection_curves.csv``, ``gas_retrieval.csv`` and
    ``gas_evaluation.json``; returns the frames, the model's test predictions (``pred``,
    :func:`~astrobio_lib.tasks.gas_detection.baselines.predict`) and the truth of every spectrum
    (``truth``).

    Raises:
        DataNotBuilt: no spectra in the run folder.
        FileNotFoundError: no checkpoint.
        astrobio_lib.train.checkpoint.ConfigMismatch: the checkpoint was not trained on these spectra
            for this task.
    """
    from astrobio_lib.train import checkpoint as ckpt

    run_dir = Path(run_dir)
    ds = _load(run_dir / "data")
    model, config_flat, path = load_model(run_dir)
    key = ds.manifest.get("cache_key")
    if config_flat.get("task") != NAME or config_flat.get("dataset_build_sha256") != key:
        raise ckpt.ConfigMismatch(f"{path} was trained with task: {config_flat.get('task')} on data "
                                  f"{str(config_flat.get('dataset_build_sha256'))[:12]}…, not on the gas-detection "
                                  f"spectra in {spectra_dir(run_dir / 'data')} ({str(key)[:12]}…): train this run "
                                  f"with task: {NAME}")
    which = split(ds, seed)
    test = GasDetectionDataset(ds, which, "test", draws, seed)
    pred = bl.predict(model, test)
    curves = bl.detection_curves(ds, which, draws=draws, bootstrap=bootstrap, seed=seed, progress=progress,
                                 scorers={"model": bl.scorer(pred)})
    truth = retrieval_truth(ds)
    retrieval = bl.retrieval_table(pred, truth, RETRIEVAL_TARGETS)
    calibration = bl.interval_calibration(pred, truth, RETRIEVAL_TARGETS)
    verdict = bl.verdicts(curves)
    curves.to_csv(run_dir / "gas_detection_curves.csv", index=False)
    retrieval.to_csv(run_dir / "gas_retrieval.csv", index=False)
    out = {"checkpoint": str(path), "simulated": True, "n_test_spectra": int((which == "test").sum()),
           "n_test_hosts": int(len(np.unique(ds.hostname[which == "test"]))), "noise_draws": draws,
           "bootstrap": bootstrap, "verdicts": verdict.to_dict("records"),
           "retrieval": retrieval.to_dict("records"), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run_dir / "gas_evaluation.json").write_text(json.dumps(out, indent=1, default=float))
    return {**out, "curves": curves, "verdict_table": verdict, "retrieval_table": retrieval,
            "calibration": calibration, "pred": pred, "truth": truth}


def evaluate(cfg, progress: Optional[Callable[[int, int], None]] = None) -> Evaluation:
    """Notebook 04's evaluation of the run of ``cfg`` and its verdict."""
    result = evaluate_gas_run(cfg.run.run_dir, draws=cfg.eval.gas_noise_draws, bootstrap=cfg.eval.bootstrap_samples,
                              seed=cfg.run.seed, progress=progress)
    v = result["verdict_table"]
    counts = v["verdict"].value_counts().to_dict()
    beats = counts.get("beats", 0)
    headline = (f"the model beats full-spectrum gradient boosting in {beats} of {len(v)} gas x N cells, is worse in "
                f"{counts.get('worse', 0)}, not distinguishable in {counts.get('not distinguishable', 0)}")
    return Evaluation("PASS" if beats and not counts.get("worse") else "WARN", headline, result)

