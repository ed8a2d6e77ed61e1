"""Gas detection from SIMULATED JWST transmission spectra: the baselines, the detection curves and the
trained model's predictions and retrieval checks.

The question (issue 14): given a noisy transmission spectrum from N transits, which gases are in the
atmosphere? The truth is known because the spectra are simulated from drawn atmospheres
(:mod:`astrobio_lib.data.gas_spectra`). Protocol, for each number of transits N:

- train on noisy draws (``draws`` per noiseless spectrum) of the training hosts' spectra at N,
  test on fresh noisy draws of the test hosts' spectra at N (split by host star: no star and no
  noiseless spectrum in two splits);
- per gas: AUROC, F1 at the 0.5 threshold, recall at a 5% false-positive rate, each with a 95%
  interval from a bootstrap over test host stars.

Baselines on that protocol:
1. ``catalog``: gradient boosting on the planet's catalog columns only — the circularity check: the
   atmospheres are drawn independently of the planet, so it must sit at AUROC ~0.5.
2. ``band_depths``: logistic regression on band depths at the gases' known features (mean depth in
   each band minus the spectrum's median depth, in units of the bin noise).
3. ``spectrum_gbt``: gradient boosting (``HistGradientBoostingClassifier``) on the full binned spectrum
   (median-subtracted, in units of the bin noise).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import transmission as tx
from astrobio_lib.evaluate import one_thread
from astrobio_lib.tasks.gas_detection.dataset import TRANSITS, normalised

# the gases' strongest features inside 0.6-5.3 µm in the shipped cross sections (µm)
BANDS = {
    "H2O": ((1.33, 1.48), (1.80, 1.95), (2.55, 2.90)),
    "CO2": ((1.95, 2.06), (2.70, 2.90), (4.20, 4.45)),
    "CH4": ((1.10, 1.20), (1.62, 1.72), (2.20, 2.40), (3.20, 3.45)),
    "O2": ((0.74, 0.78), (1.25, 1.29)),
    "O3": ((3.20, 3.40), (4.65, 4.95)),
}
BASELINES = ("catalog", "band_depths", "spectrum_gbt")


def band_depths(ds: gs.GasSpectra, z: np.ndarray) -> np.ndarray:
    """Mean normalised depth in each gas band (:data:`BANDS`), one column per band."""
    wl = ds.wavelength_um
    cols = []
    for gas in tx.GASES:
        for lo, hi in BANDS[gas]:
            m = (wl >= lo) & (wl <= hi)
            cols.append(z[:, m].mean(axis=1) if m.any() else np.zeros(len(z)))
    return np.stack(cols, axis=1)


def _classifier(name: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "band_depths":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float = 0.05) -> float:
    """Recall at the threshold that keeps the false-positive rate at or below ``fpr``."""
    neg = np.sort(score[y == 0])
    if len(neg) == 0 or (y == 1).sum() == 0:
        return float("nan")
    threshold = neg[min(len(neg) - 1, int(np.ceil((1 - fpr) * len(neg))) - 1)] if len(neg) else 0.0
    return float((score[y == 1] > threshold).mean())


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank sum (ties get average ranks); nan without
    both classes."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((rankdata(score)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "f1": float("nan"), "recall_at_5pct_fpr": float("nan")}
    pred = score >= 0.5
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    return {"auroc": auroc(y, score), "f1": 2 * tp / max(2 * tp + fp + fn, 1), "recall_at_5pct_fpr": recall_at_fpr(y, score)}


def _bootstrap(y: np.ndarray, score: np.ndarray, hosts: np.ndarray, samples: int, seed: int) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    unique = np.unique(hosts)
    index = {h: np.flatnonzero(hosts == h) for h in unique}
    draws = {k: [] for k in ("auroc", "f1", "recall_at_5pct_fpr")}
    for _ in range(samples):
        pick = np.concatenate([index[h] for h in rng.choice(unique, len(unique))])
        for k, v in _metrics(y[pick], score[pick]).items():
            if np.isfinite(v):
                draws[k].append(v)
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (np.nan, np.nan)
            for k, v in draws.items()}


def _fit_and_score(ds: gs.GasSpectra, base: str, cat: np.ndarray, train: np.ndarray, x_te: np.ndarray,
                   r_te: np.ndarray, n: int, draws: int, seed: int) -> np.ndarray:
    """P(present) [test draws, gases] of baseline ``base`` fitted, one classifier per gas, on noisy
    draws of the training spectra at ``n`` transits (seed + 17 N)."""
    x_tr, r_tr = gs.noisy(ds, train, n, draws, seed + 17 * n)
    if base == "catalog":
        f_tr, f_te = cat[r_tr], cat[r_te]
    else:
        z_tr, z_te = normalised(ds, x_tr, r_tr, n), normalised(ds, x_te, r_te, n)
        f_tr, f_te = (band_depths(ds, z_tr), band_depths(ds, z_te)) if base == "band_depths" else (z_tr, z_te)
    with one_thread():
        return np.column_stack([_classifier(base, seed).fit(f_tr, ds.present[r_tr, g]).predict_proba(f_te)[:, 1]
                                for g in range(len(tx.GASES))])


def detection_curves(ds: gs.GasSpectra, split: np.ndarray, transits: tuple[int, ...] = TRANSITS, draws: int = 4,
                     baselines: tuple[str, ...] = BASELINES, bootstrap: int = 100, seed: int = 0,
                     progress: Optional[Any] = None,
                     scorers: Optional[dict[str, Callable[[int, np.ndarray], np.ndarray]]] = None) -> pd.DataFrame:
    """Returns one row per (baseline, gas, N): AUROC, F1, recall at 5% FPR and their 95% host-bootstrap
    intervals on the test split (module docstring for the protocol). ``scorers`` adds predictors
    trained elsewhere: ``scorer(n_transits, noiseless_rows)`` returns P(present) [rows, gases] for
    the test draws at N (the same draws the baselines are scored on: seed + 17 N + 1)."""
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    hosts = ds.hostname
    cat = ds.catalog_features()
    rows = []
    steps = [(n, b) for n in transits for b in (*baselines, *(scorers or {}))]
    for step, (n, base) in enumerate(steps):
        x_te, r_te = gs.noisy(ds, test, n, draws, seed + 17 * n + 1)
        if scorers and base in scorers:
            probs = scorers[base](n, r_te)
        else:
            probs = _fit_and_score(ds, base, cat, train, x_te, r_te, n, draws, seed)
        for g, gas in enumerate(tx.GASES):
            y = ds.present[r_te, g].astype(int)
            ci = _bootstrap(y, probs[:, g], hosts[r_te], bootstrap, seed + g)
            rows.append({"baseline": base, "gas": gas, "n_transits": n, **_metrics(y, probs[:, g]),
                         **{f"{k}_lo": v[0] for k, v in ci.items()}, **{f"{k}_hi": v[1] for k, v in ci.items()},
                         "n_test_spectra": len(test), "n_test_hosts": len(np.unique(hosts[test]))})
        if progress:
            progress(step + 1, len(steps))
    return pd.DataFrame(rows)


def circularity_check(ds: gs.GasSpectra, seed: int = 0, folds: int = 5) -> dict[str, float]:
    """Returns the out-of-fold AUROC per gas of gradient boosting on the catalog columns alone,
    folds grouped by host star, over every noiseless spectrum. The atmospheres are drawn
    independently of the planet, so this must sit near 0.5: a higher value would mean a target
    leaks into an input."""
    from sklearn.model_selection import GroupKFold

    x, hosts = ds.catalog_features(), ds.hostname
    out = {}
    for g, gas in enumerate(tx.GASES):
        y = ds.present[:, g].astype(int)
        score = np.zeros(len(y))
        for tr, te in GroupKFold(n_splits=folds).split(x, y, hosts):
            with one_thread():
                score[te] = _classifier("catalog", seed).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
        out[gas] = auroc(y, score)
    return out


# --------------------------------------------------------------------------- the trained model


def predict(model, dataset, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Runs a model of the gas-detection task over a
    :class:`~astrobio_lib.tasks.gas_detection.dataset.GasDetectionDataset`; returns per item ``prob``
    [n, gases] (P(present)), ``mean`` and ``std`` [n, 8] of the retrieval targets in physical units,
    the noiseless ``row`` and ``n_transits``."""
    from scipy.special import expit

    from astrobio_lib.inference import run_batches
    from astrobio_lib.tasks.gas_detection.dataset import collate

    outs, _ = run_batches(model, dataset, collate, batch_size,
                          keys=("gas_logits", "retrieval_mean", "retrieval_log_var"))
    mean, log_var = outs["retrieval_mean"], outs["retrieval_log_var"]
    return {"prob": expit(outs["gas_logits"]), "mean": dataset.physical(mean),
            "std": np.exp(0.5 * log_var) * dataset.target_std, "row": dataset.rows, "n_transits": dataset.n_transits}


def scorer(pred: dict[str, np.ndarray]) -> Callable[[int, np.ndarray], np.ndarray]:
    """A :func:`detection_curves` scorer from :func:`predict`'s output on the test split.

    Raises:
        ValueError: the predictions are not of the baselines' test draws (another seed or split).
    """
    def score(n: int, rows: np.ndarray) -> np.ndarray:
        at = pred["n_transits"] == n
        if not np.array_equal(pred["row"][at], rows):
            raise ValueError(f"the model's predictions at N={n} are not of the baselines' test spectra: predict on "
                             f"the test split built with the same seed and gas_noise_draws")
        return pred["prob"][at]
    return score


def retrieval_table(pred: dict[str, np.ndarray], truth: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """Per retrieval target and N: R², RMSE, and the coverage of the predicted 68% and 95% central
    Gaussian intervals (the fraction of truths inside; a calibrated model gives 0.68 and 0.95). Only
    spectra that have the target count (an absent gas has no abundance)."""
    from scipy.stats import norm

    y = truth[pred["row"]]
    rows = []
    for n in np.unique(pred["n_transits"]):
        at = pred["n_transits"] == n
        for k, name in enumerate(names):
            has = at & np.isfinite(y[:, k])
            if has.sum() < 2:
                continue
            t, mu, sd = y[has, k], pred["mean"][has, k], pred["std"][has, k]
            z = np.abs(t - mu) / sd
            rows.append({"target": name, "n_transits": int(n), "n": int(has.sum()),
                         "r2": 1 - float(((t - mu) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12)),
                         "rmse": float(np.sqrt(((t - mu) ** 2).mean())),
                         "coverage_68": float((z <= norm.ppf(0.84)).mean()),
                         "coverage_95": float((z <= norm.ppf(0.975)).mean())})
    return pd.DataFrame(rows)


def interval_calibration(pred: dict[str, np.ndarray], truth: np.ndarray, names: tuple[str, ...],
                         levels: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Observed coverage of the predicted central intervals at each nominal level, per target (all N
    together): the calibration curve of the retrieval (on the diagonal when calibrated)."""
    from scipy.stats import norm

    levels = np.linspace(0.1, 0.95, 18) if levels is None else levels
    y = truth[pred["row"]]
    rows = []
    for k, name in enumerate(names):
        has = np.isfinite(y[:, k])
        if not has.any():
            continue
        z = np.abs(y[has, k] - pred["mean"][has, k]) / pred["std"][has, k]
        for p in levels:
            rows.append({"target": name, "nominal": float(p), "observed": float((z <= norm.ppf(0.5 + p / 2)).mean())})
    return pd.DataFrame(rows)


def verdicts(curves: pd.DataFrame, model: str = "model", against: str = "spectrum_gbt") -> pd.DataFrame:
    """Per gas and N: the model's AUROC and the reference's with their 95% host-bootstrap intervals,
    and the verdict — ``beats`` / ``worse`` only with non-overlapping intervals, else ``not
    distinguishable``."""
    m = curves[curves["baseline"] == model].set_index(["gas", "n_transits"])
    r = curves[curves["baseline"] == against].set_index(["gas", "n_transits"])
    rows = []
    for key in m.index.intersection(r.index):
        a, b = m.loc[key], r.loc[key]
        verdict = ("beats" if a["auroc_lo"] > b["auroc_hi"] else "worse" if a["auroc_hi"] < b["auroc_lo"]
                   else "not distinguishable")
        rows.append({"gas": key[0], "n_transits": key[1], f"{model}_auroc": f"{a['auroc']:.3f} [{a['auroc_lo']:.3f}, {a['auroc_hi']:.3f}]",
                     f"{against}_auroc": f"{b['auroc']:.3f} [{b['auroc_lo']:.3f}, {b['auroc_hi']:.3f}]",
                     "verdict": verdict})
    return pd.DataFrame(rows)
