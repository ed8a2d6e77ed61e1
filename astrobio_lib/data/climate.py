"""Climate datacubes from the CLERO GCM emulator (``clero`` on PyPI, MIT; trained on the
ThousandWorlds UM / ExoCAM / ExoPlaSim runs of tidally locked ocean planets; runs offline).

Per planet: an xarray DataArray ``[variable, level, lat, lon]`` = temperature (K) and specific
humidity (kg/kg) on 10 x 32 x 64, the surface-temperature map, CLERO's climate state (one of
``CLIMATE_STATES``), and the habitable surface fraction (area with 273 K <= Ts <= 373 K).

Inputs: T_star = st_teff, F_star = 1361 W/m^2 * insolation, radius = pl_rade,
gravity = 9.807 m/s^2 * M / R^2, P_rot = orbital period (tidally locked), and the assumed
atmosphere (P0, CO2, CH4; :mod:`astrobio_lib.data.atmosphere`). A planet outside
``clero.CORE_DOMAIN`` (or, with ``domain="extended"``, ``clero.EXTENDED_DOMAIN``: the full extent
of its training set) gets **no cube** (its climate modality is masked), never an extrapolation.
The inter-GCM spread in global-mean surface temperature is ~6-7 K (THAI): differences below that
are not meaningful.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import xarray as xr

SOLAR_CONSTANT_W_M2 = 1361.0
EARTH_GRAVITY_M_S2 = 9.807
VARIABLES = ("temperature", "specific_humidity")
CLIMATE_STATES = ("snowball", "eyeball", "waterbelt", "globally_temperate", "moist_greenhouse",
                  "runaway_greenhouse")


@dataclass
class ClimateResult:
    """Climate outputs for a set of planets (only the in-domain ones have cubes)."""

    inputs: pd.DataFrame  # one row per planet: CLERO inputs + in_domain + reason
    cubes: Optional[np.ndarray]  # [n_in_domain, 2, 10, 32, 64] float32
    surface_temperature: Optional[np.ndarray]  # [n_in_domain, 32, 64]
    state: np.ndarray  # [n_in_domain] indices into CLIMATE_STATES
    habitable_fraction: np.ndarray  # [n_in_domain]
    lat: np.ndarray
    lon: np.ndarray
    levels_pa_at_1bar: np.ndarray  # CLERO's level pressures for P0 = 1 bar (they scale with P0)
    emulator_sha256: str
    version: str


def clero_inputs(catalog: pd.DataFrame, atmospheres: pd.DataFrame, domain: str = "core") -> pd.DataFrame:
    """Returns CLERO's input table per planet with ``in_domain`` and, if not, the ``reason``.

    Raises:
        ValueError: ``domain`` is not core or extended.
    """
    import clero

    if domain not in ("core", "extended"):
        raise ValueError(f"climate_domain={domain!r}: core or extended")
    bounds = clero.CORE_DOMAIN if domain == "core" else clero.EXTENDED_DOMAIN
    radius = catalog["pl_rade"].to_numpy(float)
    mass = catalog["pl_bmasse"].to_numpy(float)
    inputs = pd.DataFrame({
        "T_star": catalog["st_teff"].to_numpy(float),
        "F_star": SOLAR_CONSTANT_W_M2 * catalog["pl_insol"].to_numpy(float),
        "radius": radius,
        "gravity": EARTH_GRAVITY_M_S2 * mass / radius**2,
        "P_rot": catalog["pl_orbper"].to_numpy(float),
        "P0": atmospheres["P0"].to_numpy(float),
        "CO2": atmospheres["CO2"].to_numpy(float),
        "CH4": atmospheres["CH4"].to_numpy(float),
    }, index=catalog.index)
    reasons = pd.Series("", index=inputs.index)
    for name, (lo, hi) in bounds.items():
        v = inputs[name]
        bad = v.isna() | (v < lo) | (v > hi)
        reasons[bad] += f"{name} outside [{lo}, {hi}]; "
    inputs["in_domain"] = reasons.eq("")
    inputs["reason"] = reasons.str.rstrip("; ")
    return inputs


def emulate(catalog: pd.DataFrame, atmospheres: pd.DataFrame, domain: str = "core") -> ClimateResult:
    """Runs CLERO for every in-domain planet and returns the cubes and diagnostics."""
    import clero
    from clero.climate_analysis import states as clero_states
    from clero.climate_analysis.grid import latitude_centers, latitude_weights, longitude_centers
    from clero.climate_analysis.profiles import pressure_levels

    inputs = clero_inputs(catalog, atmospheres, domain)
    emu = clero.Emulator()
    lat, lon = latitude_centers(32), longitude_centers(64)
    inside = inputs[inputs["in_domain"]]
    levels = np.asarray(pressure_levels(1.0), dtype=float).ravel()
    if inside.empty:
        return ClimateResult(inputs, None, None, np.zeros(0, int), np.zeros(0), lat, lon,
                             levels, emu.bundle_sha256, clero.__version__)
    batch = {k: inside[k].tolist() for k in ("T_star", "F_star", "radius", "gravity", "P_rot", "P0", "CO2", "CH4")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # domain warnings: we stay inside CORE_DOMAIN
        out = emu.predict(batch)
    temperature = np.stack([out[f"temperature_{k}"] for k in range(10)], axis=1)
    humidity = np.stack([out[f"specific_humidity_{k}"] for k in range(10)], axis=1)
    cubes = np.stack([temperature, humidity], axis=1).astype(np.float32)  # [n, 2, 10, 32, 64]
    ts = np.asarray(out["surface_temperature"], dtype=float)
    states = clero_states.climate_state(out, [dict(zip(batch, vals, strict=True)) for vals in zip(*batch.values(), strict=True)])
    state_idx = np.array([CLIMATE_STATES.index(s) for s in np.atleast_1d(states["state"])])
    w = latitude_weights(lat)[:, None] / 64.0
    habitable_fraction = (((ts >= 273.0) & (ts <= 373.0)) * w).sum(axis=(-2, -1))
    return ClimateResult(inputs, cubes, ts.astype(np.float32), state_idx, habitable_fraction,
                         lat, lon, levels, emu.bundle_sha256, clero.__version__)


def to_dataarray(cube: np.ndarray, result: ClimateResult, name: str = "") -> xr.DataArray:
    """Returns one planet's cube as an xarray DataArray with named, unit-carrying coordinates."""
    return xr.DataArray(
        cube, dims=("variable", "level", "lat", "lon"),
        coords={"variable": list(VARIABLES), "level": np.arange(cube.shape[1]),
                "lat": result.lat, "lon": result.lon},
        attrs={"planet": name, "units": "temperature: K; specific_humidity: kg/kg",
               "lat_units": "degrees_north", "lon_units": "degrees from the substellar point",
               "source": f"clero {result.version} (weights sha256 {result.emulator_sha256[:12]})"})
