"""The gas-detection dataset: SIMULATED JWST NIRSpec PRISM transmission spectra of real rocky
planets (:mod:`astrobio_lib.data.transmission`), generated once per build on every core and cached.

One record per *noiseless spectrum*: the planet (a catalog row), the drawn atmosphere (the hidden
truth: which gases are present, their log10 VMR, temperature, surface pressure, cloud-top pressure),
the binned depth, and the per-transit photon noise of that star. Noisy spectra are drawn from these
at training / evaluation time for any number of transits (:func:`noisy`), many draws per noiseless
spectrum.

Nothing here is a function of a target: the atmosphere is drawn independently of the planet, so
the catalog cannot predict a gas (the catalog-only baseline must sit at AUROC ~0.5).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from astrobio_lib.data import transmission as tx

ROCKY_MAX_RADIUS_REARTH = 1.8  # Fulton et al. 2017 radius gap: below it, mostly rocky
CATALOG_FEATURES = ("pl_rade", "pl_bmasse", "pl_orbper", "pl_orbsmax", "pl_insol", "pl_eqt", "st_teff", "st_rad",
                    "st_mass", "st_met", "sy_dist", "sy_kmag")
FORMAT = 1


def feature_snr(row: dict, n_transits: float = 10.0) -> float:
    """Signal-to-noise of a 5-scale-height spectral feature (N2 at 300 K) in one R = 50 bin at 3 µm after
    ``n_transits`` — a transmission-spectroscopy ranking in the spirit of Kempton et al. 2018's TSM,
    from this module's own forward and noise models' inputs."""
    star, planet = tx.bodies_from_row(row)
    g = 6.674e-11 * planet.mass_mearth * 5.9722e24 / (planet.radius_rearth * 6.371e6) ** 2
    scale_height = tx.KB * 300.0 / (28.0 * 1.66054e-27 * g)
    feature = 2 * planet.radius_rearth * 6.371e6 * 5 * scale_height / (star.radius_rsun * tx.R_SUN_M) ** 2
    return float(feature / tx.noise_sigma(star, planet, np.array([2.97, 3.03]), n_transits)[0])


def rocky_planets(planets: pd.DataFrame, n: int) -> pd.DataFrame:
    """Returns the ``n`` rocky planets (below the radius gap, one per host star) whose atmospheres
    JWST could best characterise (highest :func:`feature_snr`), with everything the forward and noise
    models need. Most rocky planets orbit distant Sun-like stars, where a rocky planet's features sit
    far below the noise floor: only a few dozen host stars (nearby M dwarfs: TRAPPIST-1, Teegarden's
    Star, Proxima Centauri, ...) give a feature above 1 sigma after 10 transits."""
    need = ["pl_rade", "st_teff", "st_rad", "sy_dist", "pl_orbper"]
    ok = planets[(planets["pl_rade"] <= ROCKY_MAX_RADIUS_REARTH) & planets[need].notna().all(axis=1)
                 & (planets["st_teff"] >= 2300) & (planets["st_teff"] <= 7000)].copy()
    ok["feature_snr_10"] = [feature_snr(r) for r in ok.to_dict("records")]
    ok = ok.sort_values(["feature_snr_10", "pl_name"], ascending=[False, True]).drop_duplicates("hostname")
    if len(ok) < n:
        raise ValueError(f"only {len(ok)} host stars have a rocky planet with radius, period, stellar temperature, "
                         f"radius and distance in the catalog; asked for {n}")
    return ok.head(n).reset_index(drop=True)


@dataclass
class GasSpectra:
    """Noiseless spectra, their truths and noise (arrays over spectra; see the module docstring)."""

    edges_um: np.ndarray  # [bins + 1]
    wavelength_um: np.ndarray  # [bins] bin centres
    depth: np.ndarray  # [n, bins] noiseless transit depth
    sigma_transit: np.ndarray  # [n, bins] photon noise of one transit (the floor is added per N)
    present: np.ndarray  # [n, gases] bool
    log10_vmr: np.ndarray  # [n, gases], nan when absent
    temperature_k: np.ndarray
    log10_surface_pressure_pa: np.ndarray
    log10_cloud_top_pa: np.ndarray  # nan: no cloud deck
    planet: np.ndarray  # [n] index into ``planets``
    planets: pd.DataFrame  # the catalog rows
    manifest: dict[str, Any]

    @property
    def hostname(self) -> np.ndarray:
        return self.planets["hostname"].to_numpy()[self.planet]

    def sigma(self, n_transits: float) -> np.ndarray:
        """[n, bins] depth uncertainty after ``n_transits`` (photon noise averages down, the floor stays)."""
        return np.sqrt(self.sigma_transit**2 / n_transits + (self.manifest["generator"]["noise_floor_ppm"] * 1e-6) ** 2)

    def catalog_features(self) -> np.ndarray:
        """[n, k] the planet's catalog columns (:data:`CATALOG_FEATURES`; a column no planet has —
        e.g. in the synthetic catalog — is left out)."""
        x = self.planets.reindex(columns=list(CATALOG_FEATURES)).to_numpy(dtype=float)
        return x[:, ~np.all(np.isnan(x), axis=0)][self.planet]


def noisy(ds: GasSpectra, rows: np.ndarray, n_transits: float, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (noisy depths [len(rows) * draws, bins], the noiseless row of each) — Gaussian noise
    of the per-bin sigma after ``n_transits`` transits, ``draws`` independent draws per spectrum."""
    rng = np.random.default_rng(seed)
    rep = np.repeat(np.asarray(rows), draws)
    return ds.depth[rep] + rng.standard_normal((len(rep), ds.depth.shape[1])) * ds.sigma(n_transits)[rep], rep


# --------------------------------------------------------------------------- generation


def _work(job: tuple[int, dict, dict]) -> tuple[int, np.ndarray]:
    i, body, atm = job
    star, planet = tx.Star(**body["star"]), tx.PlanetBody(**body["planet"])
    _, depth = tx.spectrum(star, planet, tx.Atmosphere(**atm))
    return i, depth


def _quiet_init() -> None:  # TauREx prints a numba notice on import; keep worker output clean
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import taurex.model  # noqa: F401


def generate(planets: pd.DataFrame, atmospheres_per_planet: int, seed: int, processes: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> GasSpectra:
    """Draws ``atmospheres_per_planet`` atmospheres per planet and runs TauREx for each, on
    ``processes`` worker processes (default: every core). ``progress(done, total)`` is called as
    spectra finish."""
    rng = np.random.default_rng(seed)
    bodies, atmospheres, planet_index = [], [], []
    for p, row in enumerate(planets.to_dict("records")):
        star, planet = tx.bodies_from_row(row)
        for _ in range(atmospheres_per_planet):
            atmospheres.append(tx.draw_atmosphere(rng))
            bodies.append((star, planet))
            planet_index.append(p)
    jobs = [(i, {"star": vars(s), "planet": vars(pl)}, vars(a)) for i, ((s, pl), a) in enumerate(zip(bodies, atmospheres, strict=True))]
    n_bins = len(tx.PRISM_EDGES_UM) - 1
    depth = np.zeros((len(jobs), n_bins))
    processes = processes or os.cpu_count() or 1
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited torch/OpenMP threads
    with ctx.Pool(processes, initializer=_quiet_init) as pool:
        for done, (i, d) in enumerate(pool.imap_unordered(_work, jobs, chunksize=4), 1):
            depth[i] = d
            if progress:
                progress(done, len(jobs))
    seconds = time.perf_counter() - t0
    sigma = np.stack([tx.noise_sigma(s, pl, n_transits=1.0, floor_ppm=0.0) for s, pl in bodies])
    present = np.stack([a.present() for a in atmospheres])
    vmr = np.array([[a.log10_vmr.get(g, np.nan) for g in tx.GASES] for a in atmospheres])
    edges = tx.PRISM_EDGES_UM
    manifest = {"format": FORMAT, "simulated": True, "what": "SIMULATED JWST NIRSpec PRISM transmission spectra of "
                "real catalog planets; atmospheres drawn from priors (the truth)", "seed": seed,
                "atmospheres_per_planet": atmospheres_per_planet, "n_spectra": len(jobs), "n_planets": len(planets),
                "generator": tx.describe(), "opacities": tx.opacity_manifest(),
                "generation": {"seconds": round(seconds, 2), "processes": processes,
                               "spectra_per_s": round(len(jobs) / max(seconds, 1e-9), 2)}}
    return GasSpectra(edges, np.sqrt(edges[:-1] * edges[1:]), depth, sigma, present, vmr,
                      np.array([a.temperature_k for a in atmospheres]),
                      np.log10([a.surface_pressure_pa for a in atmospheres]),
                      np.array([math.log10(a.cloud_top_pa) if a.cloud_top_pa else np.nan for a in atmospheres]),
                      np.array(planet_index), planets.reset_index(drop=True), manifest)


def cache_key(planets: pd.DataFrame, atmospheres_per_planet: int, seed: int) -> str:
    """sha256 of what determines the spectra: planets, draws, generator settings, TauREx, opacities."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(planets[["pl_name", *CATALOG_FEATURES]], index=False).values.tobytes())
    op = tx.opacity_manifest()
    h.update(json.dumps({"n": atmospheres_per_planet, "seed": seed, "format": FORMAT, "generator": tx.describe(),
                         "opacity": op["opacity_sha256"], "taurex": op["taurex"]}, sort_keys=True,
                        default=str).encode())
    return h.hexdigest()


def save(ds: GasSpectra, folder: Path, key: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "spectra.tmp.npz"
    np.savez_compressed(tmp, edges_um=ds.edges_um, wavelength_um=ds.wavelength_um, depth=ds.depth,
                        sigma_transit=ds.sigma_transit, present=ds.present, log10_vmr=ds.log10_vmr,
                        temperature_k=ds.temperature_k, log10_surface_pressure_pa=ds.log10_surface_pressure_pa,
                        log10_cloud_top_pa=ds.log10_cloud_top_pa, planet=ds.planet)
    ds.planets.to_parquet(folder / "planets.parquet")
    os.replace(tmp, folder / "spectra.npz")
    (folder / "manifest.json").write_text(json.dumps({**ds.manifest, "cache_key": key}, indent=2, default=str))
    return folder


def load(folder: Path) -> GasSpectra:
    """Raises:
        FileNotFoundError: no generated set in ``folder`` (build it with :func:`build_or_load`)."""
    folder = Path(folder)
    if not (folder / "spectra.npz").is_file():
        raise FileNotFoundError(f"no gas-detection spectra in {folder}: run 01_data_validation (it generates them)")
    z = np.load(folder / "spectra.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    return GasSpectra(z["edges_um"], z["wavelength_um"], z["depth"], z["sigma_transit"], z["present"], z["log10_vmr"],
                      z["temperature_k"], z["log10_surface_pressure_pa"], z["log10_cloud_top_pa"], z["planet"],
                      pd.read_parquet(folder / "planets.parquet"), manifest)


def build_or_load(folder: Path, planets: pd.DataFrame, atmospheres_per_planet: int, seed: int,
                  processes: Optional[int] = None, progress: Optional[Callable[[int, int], None]] = None,
                  catalog: Optional[dict[str, Any]] = None) -> tuple[GasSpectra, bool]:
    """Returns (the spectra, whether they came from the cache): generated unless ``folder`` holds a
    set with the same cache key (same planets, draws, generator, TauREx and opacity tables).
    ``catalog`` (the catalog's provenance) is recorded in the manifest."""
    folder = Path(folder)
    key = cache_key(planets, atmospheres_per_planet, seed)
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("cache_key") == key:
        return load(folder), True
    ds = generate(planets, atmospheres_per_planet, seed, processes, progress)
    if catalog is not None:
        ds.manifest["catalog"] = catalog
    save(ds, folder, key)
    return ds, False
