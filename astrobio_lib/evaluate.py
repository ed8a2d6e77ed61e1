"""Evaluation: metrics with host-grouped bootstrap intervals, baselines, calibration, ablations.

Targets on the held-out (test) split, grouped by host system:
- hard label ``habitable`` (rocky and in the optimistic HZ on the catalog point estimates; planets
  whose label is undetermined are left out), for AUPRC, AUROC, balanced accuracy, MCC, F1, plain
  accuracy (shown only beside the majority-class accuracy);
- soft label ``p_habitable`` (Monte-Carlo over the error bars), for the Brier score.

Baselines on the same split: majority class (train prevalence), the HZ + rocky rule on the
catalog point estimates (the hard label's own definition: perfect on it by construction, so it
says what physics alone gives), logistic regression on (log insolation, T_eff, log radius), and
scikit-learn's HistGradientBoosting on the catalog features.

The metric functions wrap scikit-learn (tested against it on fixed inputs) and return NaN instead
of raising when a sample has a single class; the expected calibration error uses equal-mass bins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from astrobio_lib import report, tasks

# --------------------------------------------------------------------------- metrics


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN with one class."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p)) if _two_classes(y) else float("nan")


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if _two_classes(y) else float("nan")


def brier(target: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between predicted probability and target (hard or soft)."""
    return float(np.mean((np.asarray(p, float) - np.asarray(target, float)) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-mass bins: planets sorted by predicted probability, cut into ``n_bins``
    groups of (nearly) equal size; sum over bins of (bin share) x |mean(y) - mean(p)|."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, min(n_bins, len(y)))
    return float(sum(len(b) / len(y) * abs(y[b].mean() - p[b].mean()) for b in bins if len(b)))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-mass bins: mean predicted probability, observed frequency and count per bin."""
    order = np.argsort(np.asarray(p, float), kind="stable")
    rows = [{"mean_predicted": float(np.mean(np.asarray(p)[b])), "observed": float(np.mean(np.asarray(y)[b])),
             "count": len(b)} for b in np.array_split(order, min(n_bins, max(len(p), 1))) if len(b)]
    return pd.DataFrame(rows)


def classification_metrics(y: np.ndarray, p: np.ndarray, soft: Optional[np.ndarray] = None,
                           threshold: float = 0.5) -> dict[str, float]:
    """Returns prevalence, AUPRC, AUROC, balanced accuracy, MCC, F1, accuracy, majority-class
    accuracy, Brier (vs hard, and vs soft labels when given) and ECE."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, matthews_corrcoef

    y = np.asarray(y, int)
    p = np.asarray(p, float)
    pred = (p >= threshold).astype(int)
    prevalence = float(y.mean()) if len(y) else float("nan")
    out = {
        "n": int(len(y)), "positives": int(y.sum()), "prevalence": prevalence,
        "auprc": auprc(y, p), "auroc": auroc(y, p),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if _two_classes(y) else float("nan"),
        "mcc": float(matthews_corrcoef(y, pred)) if _two_classes(y) else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "majority_accuracy": float(max(prevalence, 1 - prevalence)) if len(y) else float("nan"),
        "brier": brier(y, p), "ece": expected_calibration_error(y, p),
    }
    if soft is not None:
        out["brier_soft"] = brier(soft, p)
    return out


def bootstrap_by_host(frame: pd.DataFrame, metric: Callable[[pd.DataFrame], Any], n: int = 200,
                      seed: int = 0, level: float = 0.95, desc: Optional[str] = None):
    """Returns (point estimate, low, high): the metric on ``frame`` and the percentile interval
    over ``n`` bootstrap resamples of *host systems* (planets of one host move together).
    Resamples where the metric is undefined (NaN) are dropped. When ``metric`` returns a dict of
    numbers, returns a dict of such triples (one resampling serves every metric). ``desc``: show a
    text progress bar with this label."""
    point = metric(frame)
    as_dict = isinstance(point, dict)
    points = point if as_dict else {"_": point}
    hosts = frame["hostname"].unique()
    groups = {h: idx for h, idx in frame.groupby("hostname").indices.items()}
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {k: [] for k in points}
    draws = range(n) if desc is None else report.progress(range(n), desc=desc)
    for _ in draws:
        pick = rng.choice(hosts, size=len(hosts), replace=True)
        rows = np.concatenate([groups[h] for h in pick])
        value = metric(frame.iloc[rows])
        for k, v in (value.items() if as_dict else (("_", value),)):
            if k in stats and not np.isnan(v):
                stats[k].append(v)
    alpha = (1 - level) / 2
    out = {k: (points[k], float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if v
           else (points[k], float("nan"), float("nan")) for k, v in stats.items()}
    return out if as_dict else out["_"]


# --------------------------------------------------------------------------- model


def load_model(run_dir: str | Path, which: str = "best"):
    """Returns (model in eval mode, flat config, checkpoint path) from a run's checkpoints:
    the best one (the task's best validation score) or the newest, verified by its checksum; the
    model is the task's (its modalities and heads, from the checkpoint's configuration).

    Raises:
        FileNotFoundError: the run has no checkpoint (run 03_training first).
        astrobio_lib.train.checkpoint.CheckpointError: checkpoints exist but none verifies.
    """
    from astrobio_lib.models import adapters, pretrained
    from astrobio_lib.train import checkpoint as ckpt

    state, config_flat, path = ckpt.load_model_weights(Path(run_dir) / "checkpoints", which)
    base = config_flat.get("llm_checkpoint")
    if base:  # LoRA / QLoRA or a fine-tuned pretrained LLM: the base must be the one it was trained on
        found = pretrained.fingerprint_sha256(base)
        if found != config_flat.get("llm_base_sha256"):
            raise ckpt.ConfigMismatch(f"{path} was trained on the LLM checkpoint {base} with sha256 "
                                      f"{str(config_flat.get('llm_base_sha256'))[:12]}…, but that directory now "
                                      f"holds {found[:12]}…: restore the original base checkpoint")
    # evaluation computes in fp32 whatever the training precision (a 4-bit base dequantises to fp32)
    model = tasks.build_model({**config_flat, "precision": "fp32"})
    adapters.load_trainable_state(model, state)
    return model.eval(), config_flat, path


def one_thread():
    """A context in which OpenMP / BLAS run one thread: the baselines' fits are small, and on a
    shared 2-core machine the default threading made an 8 s fit take 380 s (measured)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def evaluate(cfg, progress: Optional[Callable[[int, int], None]] = None) -> "tasks.Evaluation":
    """Evaluates the run of ``cfg`` (its best checkpoint, on its task's test split) as its task
    defines it; returns the :class:`~astrobio_lib.tasks.spec.Evaluation` (verdict and details).

    Raises:
        FileNotFoundError: no data or no checkpoint in the run folder.
        astrobio_lib.train.checkpoint.ConfigMismatch: the checkpoint was trained for another task or
            on other data.
    """
    return tasks.of(cfg).evaluate(cfg, progress)
