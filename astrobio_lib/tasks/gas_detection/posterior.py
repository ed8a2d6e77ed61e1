"""The trained model on test spectra: detection probabilities and posterior samples, and the checks
of the posterior — expected coverage and the accuracy of its summaries.

**Expected coverage** (Hermans et al. 2022, "A trust crisis in simulation-based inference?"; the check
of Vasist et al. 2023): for each test spectrum x with true latent θ*, draw S samples θ_s ~ q(θ | x)
and take the credibility of θ* — the fraction of samples the posterior finds more probable than the
truth, r = mean_s [q(θ_s | x) > q(θ* | x)]. θ* lies in the α highest-posterior-density region exactly
when r <= α, so the empirical coverage at level α is mean(r <= α); a calibrated posterior gives α at
every level (the diagonal), an over-confident one falls below it. The coverage error is the largest
|coverage(α) − α| over the levels.

The posterior is over the *latent* targets (:mod:`astrobio_lib.tasks.gas_detection.dataset`): the
truth of every target exists for every spectrum, so coverage is checked on every test spectrum; the
accuracy table (R², RMSE of the posterior mean, central-interval coverage) counts an abundance only
where the gas is present and a cloud top only with a deck, the physically meaningful cases.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

LEVELS = np.round(np.linspace(0.05, 0.95, 19), 2)


def predict(model, dataset, samples: int = 100, batch_size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Runs a gas-detection model over a test
    :class:`~astrobio_lib.tasks.gas_detection.dataset.GasDetectionDataset`; returns per item ``prob``
    [m, gases] (P(present)), ``samples`` [m, S, 8] from the posterior in physical units, the log
    densities ``samples_log_prob`` [m, S] and ``truth_log_prob`` [m] (standardised space, what the
    coverage needs), ``mean`` and ``std`` [m, 8] of the samples, the noiseless ``row`` and
    ``n_transits``. Sampling is seeded (``seed``) without touching the global generator."""
    import torch
    from scipy.special import expit

    from astrobio_lib.inference import run_batches
    from astrobio_lib.tasks.gas_detection.dataset import collate

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        outs, _ = run_batches(model, dataset, collate, batch_size,
                              keys=("gas_logits", "retrieval_samples", "retrieval_samples_log_prob",
                                    "retrieval_truth_log_prob"),
                              edit=lambda b: {**b, "posterior_samples": samples})
    physical = dataset.physical(outs["retrieval_samples"])
    return {"prob": expit(outs["gas_logits"]), "samples": physical, "samples_log_prob": outs["retrieval_samples_log_prob"],
            "truth_log_prob": outs["retrieval_truth_log_prob"], "mean": physical.mean(axis=1),
            "std": physical.std(axis=1), "row": dataset.rows, "n_transits": dataset.n_transits}


def scorer(pred: dict[str, np.ndarray]) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
    """A :func:`~astrobio_lib.tasks.gas_detection.baselines.score_cells` scorer from :func:`predict`'s
    output on the test split.

    Raises:
        ValueError: the predictions are not of the baselines' test draws (another seed or split).
    """
    def score(n: int, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        at = pred["n_transits"] == n
        if not np.array_equal(pred["row"][at], rows):
            raise ValueError(f"the model's predictions at N={n} are not of the baselines' test spectra: predict on "
                             f"the test split built with the same seed, gas_noise_draws and noise_floor")
        return pred["prob"][at]
    return score


def credibility(truth_log_prob: np.ndarray, samples_log_prob: np.ndarray) -> np.ndarray:
    """[m] the HPD credibility level at which each truth enters (module docstring)."""
    return (samples_log_prob > truth_log_prob[:, None]).mean(axis=1)


def expected_coverage(truth_log_prob: np.ndarray, samples_log_prob: np.ndarray,
                      levels: np.ndarray = LEVELS) -> pd.DataFrame:
    """Empirical coverage of the α-HPD regions at each credible level α (the diagonal when calibrated)."""
    r = credibility(truth_log_prob, samples_log_prob)
    return pd.DataFrame({"level": levels, "coverage": [float((r <= a).mean()) for a in levels]})


def coverage_error(coverage: pd.DataFrame) -> float:
    """max over levels of |coverage − level|."""
    return float((coverage["coverage"] - coverage["level"]).abs().max())


def coverage_by_n(pred: dict[str, np.ndarray], levels: np.ndarray = LEVELS) -> pd.DataFrame:
    """Expected coverage per number of transits and over every test item (``n_transits`` = 0)."""
    parts = []
    for n in (0, *np.unique(pred["n_transits"]).astype(int)):
        at = np.ones(len(pred["row"]), bool) if n == 0 else pred["n_transits"] == n
        c = expected_coverage(pred["truth_log_prob"][at], pred["samples_log_prob"][at], levels)
        parts.append(c.assign(n_transits=n))
    return pd.concat(parts, ignore_index=True)


def retrieval_table(pred: dict[str, np.ndarray], truth: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """Per target and N: R² and RMSE of the posterior mean, and how often the central 68% and 95%
    posterior intervals (sample quantiles) hold the truth — only spectra that have the target (an
    absent gas has no abundance, a cloud-free sky no cloud top)."""
    y = truth[pred["row"]]
    rows = []
    q = {p: np.quantile(pred["samples"], p, axis=1) for p in (0.025, 0.16, 0.84, 0.975)}
    for n in np.unique(pred["n_transits"]):
        at = pred["n_transits"] == n
        for k, name in enumerate(names):
            has = at & np.isfinite(y[:, k])
            if has.sum() < 2:
                continue
            t, mu = y[has, k], pred["mean"][has, k]
            rows.append({"target": name, "n_transits": int(n), "n": int(has.sum()),
                         "r2": 1 - float(((t - mu) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12)),
                         "rmse": float(np.sqrt(((t - mu) ** 2).mean())),
                         "coverage_68": float(((t >= q[0.16][has, k]) & (t <= q[0.84][has, k])).mean()),
                         "coverage_95": float(((t >= q[0.025][has, k]) & (t <= q[0.975][has, k])).mean())})
    return pd.DataFrame(rows)


def marginal_calibration(pred: dict[str, np.ndarray], latent: np.ndarray, names: tuple[str, ...],
                         levels: np.ndarray = LEVELS) -> pd.DataFrame:
    """Per target (every N together), the observed coverage of the central posterior interval at each
    nominal level, on the latent truths (all test spectra)."""
    y = latent[pred["row"]]
    rank = (pred["samples"] < y[:, None, :]).mean(axis=1)  # [m, D]: the truth's quantile in its marginal
    rows = []
    for k, name in enumerate(names):
        for a in levels:
            rows.append({"target": name, "nominal": float(a),
                         "observed": float((np.abs(rank[:, k] - 0.5) <= a / 2).mean())})
    return pd.DataFrame(rows)


def examples(pred: dict[str, np.ndarray], latent: np.ndarray, n_transits: int = 30, count: int = 3,
             seed: int = 0) -> list[dict[str, Any]]:
    """A few test spectra at ``n_transits`` for the corner plots: their samples and latent truths."""
    at = np.flatnonzero(pred["n_transits"] == n_transits)
    if not len(at):
        return []
    pick = np.random.default_rng(seed).choice(at, min(count, len(at)), replace=False)
    return [{"item": int(i), "row": int(pred["row"][i]), "samples": pred["samples"][i], "truth": latent[pred["row"][i]],
             "prob": pred["prob"][i]} for i in pick]


def summary(coverage: pd.DataFrame, limit: float = 0.05) -> tuple[str, str]:
    """(PASS / WARN, a sentence) on the calibration of the posterior over every test item."""
    every = coverage[coverage["n_transits"] == 0]
    err = coverage_error(every)
    lo = every.iloc[(every["level"] - 0.68).abs().argmin()]
    if err <= limit:
        return "PASS", (f"the posterior is calibrated: expected coverage within {err:.3f} of the diagonal at every "
                        f"credible level (68% regions hold {lo['coverage']:.2f} of the truths)")
    side = "over-confident" if (every["coverage"] - every["level"]).mean() < 0 else "under-confident"
    return "WARN", (f"the posterior is {side}: expected coverage is {err:.3f} from the diagonal at worst (above the "
                    f"{limit} tolerance; 68% regions hold {lo['coverage']:.2f} of the truths)")
