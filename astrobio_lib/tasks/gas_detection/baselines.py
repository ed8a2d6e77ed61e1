"""Gas detection from SIMULATED JWST transmission spectra: the baselines, the detection curves and the
paired comparison of any predictor with them.

The question (issue 14): given a noisy transmission spectrum from N transits, which gases are in the
atmosphere? The truth is known because the spectra are simulated from drawn atmospheres
(:mod:`astrobio_lib.data.gas_spectra`). Protocol, for each number of transits N:

- train on noisy draws (``draws`` per noiseless spectrum) of the training hosts' spectra at N,
  test on fresh noisy draws of the test hosts' spectra at N (split by host star: no star and no
  noiseless spectrum in two splits);
- per gas: AUROC, F1 at the 0.5 threshold, recall at a 5% false-positive rate, each with a 95%
  interval from a two-stage bootstrap (host stars, then noiseless spectra within them, their noise
  draws together: :func:`resamples`);
- a predictor against a baseline: the *paired* difference ΔAUROC on the same resampled items, its
  95% interval and a verdict (:func:`paired_verdicts`) — not overlapping marginal intervals, which
  are far more conservative (Obuchowski 1997 for clustered ROC data).

Baselines on that protocol:
1. ``catalog``: gradient boosting on the planet's catalog columns only — the circularity check: the
   atmospheres are drawn independently of the planet, so it must sit at AUROC ~0.5.
2. ``band_depths``: logistic regression on band depths at the gases' known features (mean depth in
   each band minus the spectrum's median depth, in units of the bin noise).
3. ``spectrum_gbt``: gradient boosting (``HistGradientBoostingClassifier``) on the full binned spectrum
   (median-subtracted, in units of the bin noise).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def resamples(hosts: np.ndarray, spectra: np.ndarray, samples: int, seed: int) -> list[np.ndarray]:
    """Bootstrap index sets over test items, two-stage: host stars with replacement, then within each
    drawn star its noiseless spectra with replacement, each with all its noise draws (Obuchowski 1997:
    resample the clusters). The same sets serve every predictor, so differences are paired."""
    rng = np.random.default_rng(seed)
    by_host: dict[Any, list[np.ndarray]] = {}
    for h in np.unique(hosts):
        at = np.flatnonzero(hosts == h)
        by_host[h] = [at[spectra[at] == s] for s in np.unique(spectra[at])]
    names = list(by_host)
    out = []
    for _ in range(samples):
        parts = []
        for h in rng.choice(len(names), len(names)):
            groups = by_host[names[h]]
            parts.extend(groups[k] for k in rng.choice(len(groups), len(groups)))
        out.append(np.concatenate(parts))
    return out


def _interval(values: list[float]) -> tuple[float, float]:
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))) if values else (np.nan, np.nan)


def _bootstrap(y: np.ndarray, score: np.ndarray, sets: list[np.ndarray]) -> dict[str, tuple]:
    draws = {k: [] for k in ("auroc", "f1", "recall_at_5pct_fpr")}
    for pick in sets:
        for k, v in _metrics(y[pick], score[pick]).items():
            if np.isfinite(v):
                draws[k].append(v)
    return {k: _interval(v) for k, v in draws.items()}


def paired_delta(y: np.ndarray, a: np.ndarray, b: np.ndarray, sets: list[np.ndarray]) -> tuple[float, float, float]:
    """(AUROC(a) - AUROC(b), 95% percentile interval of the difference over the resample ``sets``):
    both predictors scored on the same resampled items each time."""
    delta = auroc(y, a) - auroc(y, b)
    draws = [d for pick in sets if np.isfinite(d := auroc(y[pick], a[pick]) - auroc(y[pick], b[pick]))]
    lo, hi = _interval(draws)
    return float(delta), lo, hi


def verdict_of(lo: float, hi: float) -> str:
    """``beats`` when the 95% interval of ΔAUROC is above zero, ``worse`` below, else ``not distinguishable``."""
    return "beats" if lo > 0 else "worse" if hi < 0 else "not distinguishable"


@dataclass
class Cell:
    """The test items at one number of transits and every predictor's P(present) on them."""

    n_transits: int
    rows: np.ndarray  # [m] the noiseless spectrum of each test item
    x: np.ndarray  # [m, bins] the noisy depths
    scores: dict[str, np.ndarray]  # predictor -> [m, gases]


Scorer = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def score_cells(ds: gs.GasSpectra, split: np.ndarray, transits: tuple[int, ...] = TRANSITS, draws: int = 4,
                baselines: tuple[str, ...] = BASELINES, seed: int = 0, floor: str = "white",
                scorers: Optional[dict[str, Scorer]] = None,
                progress: Optional[Callable[[int, int], None]] = None) -> list[Cell]:
    """Per N: the test draws (seed + 17 N + 1, floor model ``floor``) and every predictor's scores on
    them. Each baseline is fitted once per N (one classifier per gas, threads capped at one) on
    training draws made once per N (seed + 17 N) and shared by the baselines. ``scorers`` adds
    predictors trained elsewhere: ``scorer(n_transits, rows, noisy_depths)`` -> P(present) [m, gases]."""
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    cat = ds.catalog_features()
    cells = []
    steps = len(transits) * (len(baselines) + len(scorers or {}))
    done = 0
    for n in transits:
        x_te, r_te = gs.noisy(ds, test, n, draws, seed + 17 * n + 1, floor)
        scores: dict[str, np.ndarray] = {}
        if baselines:
            x_tr, r_tr = gs.noisy(ds, train, n, draws, seed + 17 * n, floor)
            z_tr, z_te = normalised(ds, x_tr, r_tr, n), normalised(ds, x_te, r_te, n)
            features = {"catalog": (cat[r_tr], cat[r_te]), "band_depths": (band_depths(ds, z_tr), band_depths(ds, z_te)),
                        "spectrum_gbt": (z_tr, z_te)}
            for base in baselines:
                f_tr, f_te = features[base]
                with one_thread():
                    scores[base] = np.column_stack([
                        _classifier(base, seed).fit(f_tr, ds.present[r_tr, g]).predict_proba(f_te)[:, 1]
                        for g in range(len(tx.GASES))])
                done += 1
                if progress:
                    progress(done, steps)
        for name, fn in (scorers or {}).items():
            scores[name] = fn(n, r_te, x_te)
            done += 1
            if progress:
                progress(done, steps)
        cells.append(Cell(int(n), r_te, x_te, scores))
    return cells


def curves_of(ds: gs.GasSpectra, cells: list[Cell], bootstrap: int = 100, seed: int = 0) -> pd.DataFrame:
    """One row per (predictor, gas, N): AUROC, F1, recall at 5% FPR and their 95% intervals from the
    two-stage bootstrap (:func:`resamples`)."""
    hosts = ds.hostname
    rows = []
    for cell in cells:
        sets = resamples(hosts[cell.rows], cell.rows, bootstrap, seed + cell.n_transits)
        test = np.unique(cell.rows)
        for name, probs in cell.scores.items():
            for g, gas in enumerate(tx.GASES):
                y = ds.present[cell.rows, g].astype(int)
                ci = _bootstrap(y, probs[:, g], sets)
                rows.append({"baseline": name, "gas": gas, "n_transits": cell.n_transits, **_metrics(y, probs[:, g]),
                             **{f"{k}_lo": v[0] for k, v in ci.items()}, **{f"{k}_hi": v[1] for k, v in ci.items()},
                             "n_test_spectra": len(test), "n_test_hosts": len(np.unique(hosts[test]))})
    return pd.DataFrame(rows)


def detection_curves(ds: gs.GasSpectra, split: np.ndarray, transits: tuple[int, ...] = TRANSITS, draws: int = 4,
                     baselines: tuple[str, ...] = BASELINES, bootstrap: int = 100, seed: int = 0,
                     progress: Optional[Any] = None, scorers: Optional[dict[str, Scorer]] = None,
                     floor: str = "white") -> pd.DataFrame:
    """Returns one row per (predictor, gas, N) on the test split (:func:`score_cells`, :func:`curves_of`)."""
    cells = score_cells(ds, split, transits, draws, baselines, seed, floor, scorers, progress)
    return curves_of(ds, cells, bootstrap, seed)


def paired_verdicts(ds: gs.GasSpectra, cells: list[Cell], model: str = "model",
                    against: tuple[str, ...] = BASELINES, bootstrap: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per gas, N and baseline: the model's AUROC, the baseline's, ΔAUROC with its 95% interval from
    the paired two-stage bootstrap (host stars, then noiseless spectra within them, noise draws
    together; the same resamples for every comparison in a cell) and the verdict (:func:`verdict_of`)."""
    rows = []
    for cell in cells:
        sets = resamples(ds.hostname[cell.rows], cell.rows, bootstrap, seed + cell.n_transits)
        for base in against:
            if base not in cell.scores:
                continue
            for g, gas in enumerate(tx.GASES):
                y = ds.present[cell.rows, g].astype(int)
                a, b = cell.scores[model][:, g], cell.scores[base][:, g]
                delta, lo, hi = paired_delta(y, a, b, sets)
                rows.append({"gas": gas, "n_transits": cell.n_transits, "against": base, "model_auroc": auroc(y, a),
                             "baseline_auroc": auroc(y, b), "delta_auroc": delta, "delta_lo": lo, "delta_hi": hi,
                             "verdict": verdict_of(lo, hi)})
    return pd.DataFrame(rows)


def strongest_baseline(curves: pd.DataFrame, spectral: tuple[str, ...] = ("band_depths", "spectrum_gbt")) -> str:
    """The spectral baseline with the highest mean AUROC over every gas and N (the one to beat)."""
    mean = curves[curves["baseline"].isin(spectral)].groupby("baseline")["auroc"].mean()
    return str(mean.idxmax())


def gap_closed(curves: pd.DataFrame, model: str = "model", ceiling: str = "oracle",
               spectral: tuple[str, ...] = ("band_depths", "spectrum_gbt")) -> pd.DataFrame:
    """Per gas and N: the best spectral baseline's AUROC, the model's, the oracle ceiling's and the
    fraction of the gap between the best baseline and the ceiling the model closes (NaN where the gap
    is under 0.01 AUROC: nothing left to close)."""
    a = curves.pivot_table(index=["gas", "n_transits"], columns="baseline", values="auroc")
    best = a[[c for c in spectral if c in a]].max(axis=1)
    out = pd.DataFrame({"best_baseline_auroc": best, "model_auroc": a[model], "oracle_auroc": a[ceiling],
                        "gap_closed": share_of_gap(a[model], best, a[ceiling])})
    return out.reset_index()


def share_of_gap(model, best, oracle):
    """(model − best) / (oracle − best), elementwise: the share of the gap between the best baseline
    and the ceiling the model closes; NaN where that gap is under 0.01 AUROC (nothing to close)."""
    model, best, oracle = (np.asarray(v, dtype=float) for v in (model, best, oracle))
    gap = oracle - best
    return np.where(gap >= 0.01, (model - best) / np.where(gap >= 0.01, gap, np.nan), np.nan)


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
