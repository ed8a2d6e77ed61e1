"""How JWST would observe the SIMULATED spectra: the systematic noise floor (white or
wavelength-correlated) and the detector's bright limit for NIRSpec PRISM.

**Noise floor** (``noise_floor`` parameter). Photon noise (:func:`astrobio_lib.data.transmission.noise_sigma`)
averages down with the number of transits N; the systematic floor does not. Its total variance per
bin is the same in both models, :data:`~astrobio_lib.data.transmission.NOISE_FLOOR_PPM` squared (20 ppm,
Greene et al. 2016, ApJ 817, 17), so each bin's marginal sigma — and every baseline's input
normalisation — is identical; what differs is the correlation between bins:

- ``white``: independent per bin (the model before wave 3; kinder than JWST: averaging bins beats it);
- ``correlated``: a white part (fraction ``1 - f``) plus a Gaussian-process part (fraction
  :data:`CORRELATED_FRACTION` f = 0.5) with a squared-exponential kernel in ln λ of length
  :data:`CORRELATION_LENGTH_LN` = 0.1 (about 5 bins at R = 50, the width of a molecular band)::

      Cov_floor[i, j] = floor² · ((1 - f) δ_ij + f · exp(-(ln λ_i - ln λ_j)² / (2 ℓ²)))

  Why this shape: JWST NIRSpec time series show residual systematics that are correlated in
  wavelength (detector 1/f noise shared between columns, Schlawin et al. 2020, AJ 160, 231; residual
  spectro-photometric drifts and limb/starspot errors that vary smoothly with wavelength, Espinoza
  et al. 2023, PASP 135, 018002). The split f and the length ℓ are assumptions of this product, stated
  here and recorded in every manifest and evaluation; a band-sized ℓ is the unkind choice (a correlated
  bump looks like a molecular band and cannot be averaged away).

**Bright limit** (``saturation`` parameter). NIRSpec PRISM in bright-object time-series mode
(SUB512 subarray, fastest readout, 2 groups) saturates for hosts brighter than J ≈ 10.5
(:data:`PRISM_SATURATION_J`: Birkmann et al. 2022, A&A 661, A83, Sect. 4; the JWST User Documentation's
"NIRSpec Bright Object Time-Series Spectroscopy" and "Bright limits of Time-Series Observation
Modes" pages, which defer to the Exposure Time Calculator for a given target). Such a host is observed
with a grating instead (G395H and others: higher resolution, narrower coverage), which this product
does not model. So ``saturation: exclude`` (the default) leaves them out of the planet list and the
set's manifest names them; ``keep`` simulates them with PRISM anyway, flagged as saturating in the
manifest, 01 and the spectra set (optimistic for those hosts). The catalog snapshot has K, not J
magnitudes: J = K + (J - K)(Teff) from the main-sequence colour sequence of Pecaut & Mamajek (2013,
ApJS 208, 9; :data:`J_MINUS_K`, interpolated in Teff) when ``sy_jmag`` is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from astrobio_lib.data import transmission as tx

FLOOR_MODELS = ("white", "correlated")
CORRELATED_FRACTION = 0.5
CORRELATION_LENGTH_LN = 0.1
PRISM_SATURATION_J = 10.5
SATURATION_CHOICES = ("exclude", "keep")
# main-sequence J - Ks by effective temperature (K), Pecaut & Mamajek 2013 (table of dwarf colours;
# rounded): M8V ... F0V
J_MINUS_K = ((2500, 1.05), (2850, 0.93), (3100, 0.90), (3400, 0.88), (3850, 0.83), (4450, 0.70),
             (5000, 0.53), (5770, 0.37), (6500, 0.27), (7200, 0.16))


def floor_covariance(wavelength_um: np.ndarray, floor: str, floor_ppm: float = tx.NOISE_FLOOR_PPM) -> np.ndarray:
    """[bins, bins] covariance of the systematic floor (depth units) for ``floor`` in :data:`FLOOR_MODELS`.

    Raises:
        ValueError: an unknown floor model.
    """
    if floor not in FLOOR_MODELS:
        raise ValueError(f"noise_floor: {floor!r}: one of {FLOOR_MODELS}")
    var = (floor_ppm * 1e-6) ** 2
    n = len(wavelength_um)
    if floor == "white":
        return var * np.eye(n)
    ln = np.log(np.asarray(wavelength_um, dtype=float))
    kernel = np.exp(-0.5 * ((ln[:, None] - ln[None, :]) / CORRELATION_LENGTH_LN) ** 2)
    return var * ((1 - CORRELATED_FRACTION) * np.eye(n) + CORRELATED_FRACTION * kernel)


class FloorNoise:
    """Draws of the floor for a wavelength grid: ``draw(z)`` maps standard normals [..., bins] to
    floor noise with :func:`floor_covariance` (a fixed linear map, so any generator can feed it)."""

    def __init__(self, wavelength_um: np.ndarray, floor: str, floor_ppm: float = tx.NOISE_FLOOR_PPM):
        self.floor, self.floor_ppm = floor, floor_ppm
        self.covariance = floor_covariance(wavelength_um, floor, floor_ppm)
        if floor == "white":
            self._factor = None
            self._scale = floor_ppm * 1e-6
        else:  # the kernel is smooth: its Cholesky factor needs a little jitter, added to the white part
            self._factor = np.linalg.cholesky(self.covariance + 1e-12 * (floor_ppm * 1e-6) ** 2 * np.eye(len(wavelength_um)))

    def draw(self, z: np.ndarray) -> np.ndarray:
        return z * self._scale if self._factor is None else z @ self._factor.T

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"noise_floor": self.floor, "floor_ppm": self.floor_ppm}
        if self.floor == "correlated":
            out.update(correlated_fraction=CORRELATED_FRACTION, correlation_length_ln_lambda=CORRELATION_LENGTH_LN,
                       kernel="squared exponential in ln wavelength")
        return out


def j_minus_k(teff_k: float) -> float:
    """Main-sequence J - Ks at ``teff_k`` (:data:`J_MINUS_K`, linear in Teff, clamped at the ends)."""
    t, c = zip(*J_MINUS_K, strict=True)
    return float(np.interp(teff_k, t, c))


def j_magnitude(row: dict[str, Any]) -> tuple[float, str]:
    """(J magnitude, where it came from): the catalog's ``sy_jmag``, else ``sy_kmag`` + J - K(Teff);
    (nan, "none") without either."""
    j = row.get("sy_jmag")
    if _finite(j):
        return float(j), "sy_jmag"
    k, teff = row.get("sy_kmag"), row.get("st_teff")
    if _finite(k) and _finite(teff):
        return float(k) + j_minus_k(float(teff)), "sy_kmag + J-K(Teff)"
    return float("nan"), "none"


def saturates(row: dict[str, Any], limit_j: float = PRISM_SATURATION_J) -> bool:
    """Whether PRISM would saturate on this host (J brighter than ``limit_j``). A host without a J or
    K magnitude is not counted as saturating (it is flagged ``none`` in :func:`j_magnitude`)."""
    j, _ = j_magnitude(row)
    return bool(_finite(j) and j < limit_j)


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
