"""Habitable-zone labels from published physics (Kopparapu et al. 2014 limits, rocky size, soft labels).

- Habitable-zone limits: Kopparapu et al. 2014, ApJL 787, L29, Table 1 (the 2014 set is pinned;
  the 2013 table had an erratum and several public copies carry typos).
- Rocky size: Rogers 2015, ApJ 801, 41 (R <= 1.6 R_earth); when the radius is missing, the
  Chen & Kipping 2017, ApJ 834, 17 mass-radius transition (M <= 2.0 M_earth).
- PHL-compatible variant: Planetary Habitability Laboratory criteria (optimistic HZ and
  0.5-2.5 R_earth, or 0.1-10 M_earth when no radius).
- Earth Similarity Index: Schulze-Makuch et al. 2011, Astrobiology 11, 1041 (radius-flux form);
  a *feature*, never a label.
- Monte-Carlo soft labels: P(habitable) over the catalog's asymmetric error bars, the primary
  training target, so no single input column reproduces the target exactly.

Outside 2600 <= T_eff <= 7200 K, or with a missing input, a label is *undetermined* (NaN / pandas
NA), never extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TEFF_SUN_K = 5780.0  # Kopparapu et al. 2014 reference temperature (not the IAU 5772 K)
TEFF_VALID_K = (2600.0, 7200.0)
ROCKY_RADIUS_MAX_EARTH = 1.6  # Rogers 2015
ROCKY_MASS_MAX_EARTH = 2.0  # Chen & Kipping 2017 Terran-Neptunian transition
PHL_RADIUS_EARTH = (0.5, 2.5)
PHL_MASS_EARTH = (0.1, 10.0)


@dataclass(frozen=True)
class HZBoundary:
    """One row of Kopparapu et al. 2014, Table 1: S_eff = S0 + aT + bT^2 + cT^3 + dT^4."""

    name: str
    s_eff_sun: float
    a: float
    b: float
    c: float
    d: float


KOPPARAPU_2014: dict[str, HZBoundary] = {
    b.name: b
    for b in (
        HZBoundary("recent_venus", 1.776, 2.136e-4, 2.533e-8, -1.332e-11, -3.097e-15),
        HZBoundary("runaway_greenhouse_1me", 1.107, 1.332e-4, 1.580e-8, -8.308e-12, -1.931e-15),
        HZBoundary("runaway_greenhouse_5me", 1.188, 1.433e-4, 1.707e-8, -8.968e-12, -2.084e-15),
        HZBoundary("runaway_greenhouse_0.1me", 0.99, 1.209e-4, 1.404e-8, -7.418e-12, -1.713e-15),
        HZBoundary("maximum_greenhouse", 0.356, 6.171e-5, 1.698e-9, -3.198e-12, -5.575e-16),
        HZBoundary("early_mars", 0.320, 5.547e-5, 1.526e-9, -2.874e-12, -5.011e-16),
    )
}


def s_eff(boundary: str, teff_k: np.ndarray | float) -> np.ndarray:
    """Returns the effective stellar flux (S/S_earth) of an HZ boundary at ``teff_k`` (K).

    Kopparapu et al. 2014, eq. (4) with Table 1; T = T_eff - 5780 K. NaN outside
    2600-7200 K (the fit's validity range) and for NaN input.

    Raises:
        KeyError: ``boundary`` is not one of :data:`KOPPARAPU_2014`.
    """
    if boundary not in KOPPARAPU_2014:
        raise KeyError(f"unknown HZ boundary {boundary!r}; one of {sorted(KOPPARAPU_2014)}")
    b = KOPPARAPU_2014[boundary]
    teff = np.asarray(teff_k, dtype=float)
    t = teff - TEFF_SUN_K
    s = b.s_eff_sun + b.a * t + b.b * t**2 + b.c * t**3 + b.d * t**4
    valid = (teff >= TEFF_VALID_K[0]) & (teff <= TEFF_VALID_K[1])
    return np.where(valid, s, np.nan)


def hz_distance_au(boundary: str, teff_k, luminosity_sun) -> np.ndarray:
    """Returns the distance (AU) of an HZ boundary: d = sqrt(L / S_eff), L in L_sun."""
    return np.sqrt(np.asarray(luminosity_sun, dtype=float) / s_eff(boundary, teff_k))


def stellar_luminosity_sun(radius_sun, teff_k) -> np.ndarray:
    """Returns L/L_sun = (R/R_sun)^2 (T_eff / 5772 K)^4 (IAU 2015 nominal solar T_eff)."""
    return np.asarray(radius_sun, dtype=float) ** 2 * (np.asarray(teff_k, dtype=float) / 5772.0) ** 4


def _between(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean-with-NaN: 1.0 / 0.0 where decidable, NaN where any input is NaN."""
    out = ((x >= lo) & (x <= hi)).astype(float)
    return np.where(np.isnan(x) | np.isnan(lo) | np.isnan(hi), np.nan, out)


def hz_conservative(insolation_earth, teff_k) -> np.ndarray:
    """1.0 inside the conservative HZ (maximum greenhouse <= S <= runaway greenhouse 1 M_earth),
    0.0 outside, NaN when undetermined."""
    s = np.asarray(insolation_earth, dtype=float)
    return _between(s, s_eff("maximum_greenhouse", teff_k), s_eff("runaway_greenhouse_1me", teff_k))


def hz_optimistic(insolation_earth, teff_k) -> np.ndarray:
    """1.0 inside the optimistic HZ (early Mars <= S <= recent Venus), 0.0 outside, NaN when
    undetermined."""
    s = np.asarray(insolation_earth, dtype=float)
    return _between(s, s_eff("early_mars", teff_k), s_eff("recent_venus", teff_k))


def rocky(radius_earth, mass_earth) -> np.ndarray:
    """1.0 when rocky-sized: R <= 1.6 R_earth (Rogers 2015); without a radius,
    M <= 2.0 M_earth (Chen & Kipping 2017). NaN when both are missing."""
    r = np.asarray(radius_earth, dtype=float)
    m = np.asarray(mass_earth, dtype=float)
    by_radius = (r <= ROCKY_RADIUS_MAX_EARTH).astype(float)
    by_mass = np.where(np.isnan(m), np.nan, (m <= ROCKY_MASS_MAX_EARTH).astype(float))
    return np.where(np.isnan(r), by_mass, by_radius)


def phl_size(radius_earth, mass_earth) -> np.ndarray:
    """1.0 when 0.5 <= R <= 2.5 R_earth, or (no radius) 0.1 <= M <= 10 M_earth (PHL criteria)."""
    r = np.asarray(radius_earth, dtype=float)
    m = np.asarray(mass_earth, dtype=float)
    by_r = ((r >= PHL_RADIUS_EARTH[0]) & (r <= PHL_RADIUS_EARTH[1])).astype(float)
    by_m = np.where(np.isnan(m), np.nan,
                    ((m >= PHL_MASS_EARTH[0]) & (m <= PHL_MASS_EARTH[1])).astype(float))
    return np.where(np.isnan(r), by_m, by_r)


def earth_similarity_index(insolation_earth, radius_earth) -> np.ndarray:
    """Returns the ESI (0-1, Earth = 1), radius-flux form of Schulze-Makuch et al. 2011:
    ESI = 1 - sqrt(0.5 [((S-1)/(S+1))^2 + ((R-1)/(R+1))^2]). A similarity ranking, not a
    measure of whether a planet is habitable."""
    s = np.asarray(insolation_earth, dtype=float)
    r = np.asarray(radius_earth, dtype=float)
    return 1.0 - np.sqrt(0.5 * (((s - 1) / (s + 1)) ** 2 + ((r - 1) / (r + 1)) ** 2))


def habitable(insolation_earth, teff_k, radius_earth, mass_earth) -> np.ndarray:
    """The primary hard label: rocky-sized AND in the optimistic HZ (1.0 / 0.0 / NaN).

    A confident "no" wins over an undetermined part: a planet that is clearly not rocky is 0.0
    even if its star is outside the HZ fit's T_eff range, and vice versa.
    """
    hz = hz_optimistic(insolation_earth, teff_k)
    rk = rocky(radius_earth, mass_earth)
    out = hz * rk
    return np.where((hz == 0) | (rk == 0), 0.0, out)


def _split_normal(rng: np.random.Generator, value, err_hi, err_lo, n: int) -> np.ndarray:
    """Samples ``n`` draws per row from a split normal: sigma+ = err_hi above the value,
    sigma- = |err_lo| below (the catalog's asymmetric errors). Missing errors -> no spread.
    Returns shape (rows, n)."""
    v = np.asarray(value, dtype=float)[:, None]
    up = np.nan_to_num(np.abs(np.asarray(err_hi, dtype=float)), nan=0.0)[:, None]
    lo = np.nan_to_num(np.abs(np.asarray(err_lo, dtype=float)), nan=0.0)[:, None]
    z = rng.standard_normal((v.shape[0], n))
    return v + np.where(z >= 0, z * up, z * lo)


def p_habitable(catalog: pd.DataFrame, n_samples: int = 256, seed: int = 0,
                min_decidable_fraction: float = 0.5) -> np.ndarray:
    """Returns the Monte-Carlo soft label P(habitable) per planet.

    Draws radius, mass, stellar T_eff and insolation from split normals over the catalog's
    asymmetric error bars (``*err1`` / ``*err2``) and averages :func:`habitable` over the draws
    that are decidable. Physical quantities are clipped at a small positive floor. NaN when fewer
    than ``min_decidable_fraction`` of the draws are decidable: a star whose T_eff lies mostly
    outside 2600-7200 K (TRAPPIST-1, 2566 K) would otherwise get a probability conditioned on the
    few draws inside the fit's range.

    Expects the cleaned columns of :func:`astrobio_lib.data.catalog.clean`.
    """
    rng = np.random.default_rng(seed)
    c = catalog
    floor = 1e-6
    r = np.clip(_split_normal(rng, c["pl_rade"], c["pl_radeerr1"], c["pl_radeerr2"], n_samples), floor, None)
    m = np.clip(_split_normal(rng, c["pl_bmasse"], c["pl_bmasseerr1"], c["pl_bmasseerr2"], n_samples), floor, None)
    t = _split_normal(rng, c["st_teff"], c["st_tefferr1"], c["st_tefferr2"], n_samples)
    s = np.clip(_split_normal(rng, c["pl_insol"], c["pl_insolerr1"], c["pl_insolerr2"], n_samples), floor, None)
    h = habitable(s, t, r, m)
    decided = ~np.isnan(h)
    n_decided = decided.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_decided >= max(1, min_decidable_fraction * n_samples),
                     np.nansum(h, axis=1) / n_decided, np.nan)
    return p


def label_table(catalog: pd.DataFrame, n_samples: int = 256, seed: int = 0) -> pd.DataFrame:
    """Returns per-planet labels: ``pl_name, hostname, hz_conservative, hz_optimistic, rocky,
    habitable_phl, habitable, esi, p_habitable`` (booleans as pandas ``boolean``; NA when
    undetermined)."""
    c = catalog
    s, t, r, m = c["pl_insol"], c["st_teff"], c["pl_rade"], c["pl_bmasse"]

    def as_bool(x: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(np.where(np.isnan(x), None, x == 1.0), dtype="boolean"), index=c.index)

    hz_opt = hz_optimistic(s, t)
    phl = phl_size(r, m)
    phl_label = np.where((hz_opt == 0) | (phl == 0), 0.0, hz_opt * phl)
    return pd.DataFrame({
        "pl_name": c["pl_name"],
        "hostname": c["hostname"],
        "hz_conservative": as_bool(hz_conservative(s, t)),
        "hz_optimistic": as_bool(hz_opt),
        "rocky": as_bool(rocky(r, m)),
        "habitable_phl": as_bool(phl_label),
        "habitable": as_bool(habitable(s, t, r, m)),
        "esi": earth_similarity_index(s, r),
        "p_habitable": p_habitable(c, n_samples=n_samples, seed=seed),
    })
