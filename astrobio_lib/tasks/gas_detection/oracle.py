"""The physical limit of detection: an oracle that knows every parameter of the atmosphere except
whether the gas is there.

For a test spectrum x of atmosphere θ and gas g, the oracle compares two simple hypotheses — the
noiseless spectrum *with* g at its (latent) abundance, s₁, and the same atmosphere *without* it, s₀
(one is the set's spectrum, the other its companion: :mod:`astrobio_lib.data.companions`) — under the
exact Gaussian noise of that star and N (photon noise and the floor model, correlated or white):

    LLR = log N(x; s₁, Σ) − log N(x; s₀, Σ) = (s₁ − s₀)ᵀ Σ⁻¹ (x − (s₁ + s₀) / 2)

With a prior of 1/2 on presence, P(present | x, θ) = sigmoid(LLR): the Bayes-optimal detector given
θ, so no predictor that does not know θ can do better on average. Its AUROC per gas and N is the
ceiling drawn beside every curve. Scores are ``sigmoid(asinh(LLR))`` — the same order and the same
0.5 threshold as the posterior, without float saturation at large |LLR| (AUROC needs the order).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from astrobio_lib.data import gas_spectra as gs


def llr(ds: gs.GasSpectra, x: np.ndarray, rows: np.ndarray, companions: np.ndarray, n_transits: float,
        floor: str) -> np.ndarray:
    """[m, gases] log-likelihood ratios of "present" vs "absent" for noisy depths ``x`` [m, bins] of
    spectra ``rows``; ``companions`` [m, gases, bins] are the rows' toggled spectra."""
    depth = np.asarray(ds.depth[rows], dtype=float)  # [m, bins]
    present = ds.present[rows]  # [m, gases]
    base = np.broadcast_to(depth[:, None, :], companions.shape)
    s1 = np.where(present[:, :, None], base, companions)
    s0 = np.where(present[:, :, None], companions, base)
    out = np.empty(present.shape)
    for p in np.unique(ds.planet[rows]):
        at = ds.planet[rows] == p
        chol = np.linalg.cholesky(gs.covariance(ds, int(p), n_transits, floor))
        diff = s1[at] - s0[at]  # [k, gases, bins]
        resid = x[at][:, None, :] - 0.5 * (s1[at] + s0[at])
        # diffᵀ Σ⁻¹ resid with Σ = L Lᵀ: (L⁻¹ diff) · (L⁻¹ resid)
        out[at] = (_whiten(chol, diff) * _whiten(chol, resid)).sum(-1)
    return out


def _whiten(chol: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L⁻¹ v along the last axis."""
    from scipy.linalg import solve_triangular

    return solve_triangular(chol, v.reshape(-1, v.shape[-1]).T, lower=True).T.reshape(v.shape)


def scorer(ds: gs.GasSpectra, companions_of: Callable[[np.ndarray], np.ndarray],
           floor: str) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
    """A :func:`~astrobio_lib.tasks.gas_detection.baselines.score_cells` scorer: the oracle's
    P(present) per test item (``companions_of(rows)`` -> [m, gases, bins])."""
    def score(n: int, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        value = llr(ds, x, rows, companions_of(rows), n, floor)
        return 1.0 / (1.0 + np.exp(-np.arcsinh(value)))
    return score
