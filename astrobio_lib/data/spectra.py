"""Transmission spectra from an analytic forward model plus a JWST-like noise model.

Forward model (documented simplification, not a radiative-transfer code): the apparent radius
at wavelength lambda is R_p + z(lambda) with z = H * max(0, ln(sum_i x_i * A_i(lambda) / x_ref)
+ ln(P0 / 1 bar) + 5), H = k T_eq / (mu m_H g) the scale height, x_i the gas mixing ratios and
A_i a sum of Gaussian bands at each gas's strong features (microns):
H2O 1.4, 1.9, 2.7, 6.3; CO2 2.0, 2.7, 4.3, 15; CH4 1.7, 2.3, 3.3, 7.7; O2 0.76, 1.27;
O3 0.6 (Chappuis), 9.6. A Rayleigh slope (lambda^-4) sets the continuum. Transit depth
D = ((R_p + z) / R_s)^2. The band shapes give the right *places*; amplitudes are relative. TauREx
through ``multirex`` is the explicit physically complete alternative (not installed by default).

Noise (JWST-like): per-bin white noise sigma = max(20 ppm floor, 60 ppm * 10^(0.2 (K - 8))) for
one transit, scaled by 1/sqrt(n_transits), with the K magnitude from the catalog (8 if missing);
a seeded draw is added. 20 ppm is of the order of NIRSpec PRISM's systematics floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

K_B = 1.380649e-23
M_H = 1.6735575e-27
R_EARTH_M = 6.371e6
R_SUN_M = 6.957e8
EARTH_GRAVITY_M_S2 = 9.807

BANDS_UM = {
    "H2O": (1.4, 1.9, 2.7, 6.3),
    "CO2": (2.0, 2.7, 4.3, 15.0),
    "CH4": (1.7, 2.3, 3.3, 7.7),
    "O2": (0.76, 1.27),
    "O3": (0.6, 9.6),
}
MOLAR_MASS = {"N2": 28.0, "CO2": 44.0, "CH4": 16.0, "O2": 32.0, "O3": 48.0, "H2O": 18.0}


def wavelength_grid_um(n_bins: int = 64, lo: float = 0.6, hi: float = 12.0) -> np.ndarray:
    """Returns ``n_bins`` log-spaced wavelengths (microns)."""
    return np.geomspace(lo, hi, n_bins)


def band_strength(gas: str, wavelength_um: np.ndarray, width_dex: float = 0.03) -> np.ndarray:
    """Returns the relative absorption of ``gas`` at each wavelength (sum of Gaussian bands in
    log wavelength)."""
    lw = np.log10(wavelength_um)
    return sum(np.exp(-0.5 * ((lw - np.log10(c)) / width_dex) ** 2) for c in BANDS_UM[gas])


def transit_depth(planets: pd.DataFrame, atmospheres: pd.DataFrame, wavelength_um: np.ndarray) -> np.ndarray:
    """Returns noiseless transit depths [planets, bins] (dimensionless); NaN rows where R_p,
    R_s, mass or T_eq is missing."""
    rp = planets["pl_rade"].to_numpy(float)[:, None] * R_EARTH_M
    rs = planets["st_rad"].to_numpy(float)[:, None] * R_SUN_M
    g = EARTH_GRAVITY_M_S2 * planets["pl_bmasse"].to_numpy(float) / planets["pl_rade"].to_numpy(float) ** 2
    t_eq = planets["t_eq_k"].to_numpy(float)
    x = {gas: atmospheres[gas].to_numpy(float)[:, None] for gas in BANDS_UM}
    background = 1 - sum(x.values())
    mu = background * MOLAR_MASS["N2"] + sum(x[gas] * MOLAR_MASS[gas] for gas in BANDS_UM)
    scale_height = K_B * t_eq[:, None] / (mu * M_H * g[:, None])
    absorption = 1e-6 * (0.6 / wavelength_um) ** 4  # Rayleigh continuum
    absorption = absorption + sum(x[gas] * band_strength(gas, wavelength_um) for gas in BANDS_UM)
    p0 = atmospheres["P0"].to_numpy(float)[:, None]
    z = scale_height * np.maximum(0.0, np.log(absorption / 1e-6) + np.log(p0) + 5.0)
    return ((rp + z) / rs) ** 2


def noise_ppm(planets: pd.DataFrame, n_transits: int = 4) -> np.ndarray:
    """Returns the per-bin 1-sigma noise (ppm) of the JWST-like model for each planet."""
    kmag = planets["sy_kmag"].to_numpy(float) if "sy_kmag" in planets else np.full(len(planets), 8.0)
    kmag = np.nan_to_num(kmag, nan=8.0)
    return np.maximum(20.0, 60.0 * 10 ** (0.2 * (kmag - 8.0))) / np.sqrt(n_transits)


def observe(planets: pd.DataFrame, atmospheres: pd.DataFrame, n_bins: int = 64, n_transits: int = 4,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (wavelengths um, observed depths [planets, bins] in ppm, noise ppm [planets])."""
    wl = wavelength_grid_um(n_bins)
    depth = transit_depth(planets, atmospheres, wl) * 1e6
    sigma = noise_ppm(planets, n_transits)
    rng = np.random.default_rng(seed)
    return wl, depth + rng.normal(size=depth.shape) * sigma[:, None], sigma
