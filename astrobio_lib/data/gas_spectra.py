"""The gas-detection spectra of a run: SIMULATED JWST NIRSpec PRISM transmission spectra of real rocky
planets (:mod:`astrobio_lib.data.transmission`), kept in the shared spectra store
(:mod:`astrobio_lib.data.spectra_store`) and linked from the run folder.

One record per *noiseless spectrum*: the planet (a catalog row), the drawn atmosphere (the hidden
truth: which gases are present, their log10 VMR, temperature, surface pressure, cloud-top pressure),
the binned depth, and the per-transit photon noise of that star. Noisy spectra are drawn from these
at training / evaluation time for any number of transits (:func:`noisy`), many draws per noiseless
spectrum.

A run's set (``<run>/data/gas_spectra``) is a link, never a copy: ``manifest.json`` names the store,
each planet's entry and the chunks it uses with their sha256, and the two small files beside it
(``planets-<sha>.parquet``, the catalog rows; ``truths-<sha>.npz``, every spectrum's truth, named by
their digest so a new set never overwrites the files the current manifest names); the manifest is
written last and atomically, so a set that stopped half-way is never read, and :func:`load` checks
every digest (the chunks' when they are read). :func:`save` exports a set to a
self-contained folder (``spectra.npz``: the format before the store, which :func:`load` keeps reading).

Nothing here is a function of a target: the atmosphere is drawn independently of the planet, so
the catalog cannot predict a gas (the catalog-only baseline must sit at AUROC ~0.5).

``python -m astrobio_lib.data.gas_spectra generate --gas-planets 40 --atmospheres 500`` fills the
store with the spectra a run with those settings trains on, on every core or on a Dask cluster.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from astrobio_lib.data import observing as obs
from astrobio_lib.data import spectra_store as st
from astrobio_lib.data import transmission as tx
from astrobio_lib.fsutil import atomic_write, fsync_dir, sha256_file, temp_path

log = logging.getLogger("astrobio.spectra")

ROCKY_MAX_RADIUS_REARTH = 1.8  # Fulton et al. 2017 radius gap: below it, mostly rocky
CATALOG_FEATURES = ("pl_rade", "pl_bmasse", "pl_orbper", "pl_orbsmax", "pl_insol", "pl_eqt", "st_teff", "st_rad",
                    "st_mass", "st_met", "sy_dist", "sy_kmag")
FORMAT = 2  # 1: spectra.npz in the folder (before the store); 2: a link to the store
TRUTHS = ("present", "log10_vmr", "temperature_k", "log10_surface_pressure_pa", "log10_cloud_top_pa")


class SpectraCorrupt(st.StoreCorrupt):
    """A file of a run's set is missing, truncated or does not match its recorded sha256."""


def feature_snr(row: dict, n_transits: float = 10.0) -> float:
    """Signal-to-noise of a 5-scale-height spectral feature (N2 at 300 K) in one R = 50 bin at 3 µm after
    ``n_transits`` — a transmission-spectroscopy ranking in the spirit of Kempton et al. 2018's TSM,
    from this module's own forward and noise models' inputs."""
    star, planet = tx.bodies_from_row(row)
    g = 6.674e-11 * planet.mass_mearth * 5.9722e24 / (planet.radius_rearth * 6.371e6) ** 2
    scale_height = tx.KB * 300.0 / (28.0 * 1.66054e-27 * g)
    feature = 2 * planet.radius_rearth * 6.371e6 * 5 * scale_height / (star.radius_rsun * tx.R_SUN_M) ** 2
    return float(feature / tx.noise_sigma(star, planet, np.array([2.97, 3.03]), n_transits)[0])


def rocky_planets(planets: pd.DataFrame, n: int, saturation: str = "exclude") -> pd.DataFrame:
    """Returns the ``n`` rocky planets (below the radius gap, one per host star) whose atmospheres
    JWST could best characterise (highest :func:`feature_snr`), with everything the forward and noise
    models need, their J magnitude and whether NIRSpec PRISM saturates on the host
    (:mod:`astrobio_lib.data.observing`; ``saturation: exclude`` leaves those hosts out). Most rocky
    planets orbit distant Sun-like stars, where a rocky planet's features sit far below the noise
    floor: only a few dozen host stars (nearby M dwarfs: TRAPPIST-1, Teegarden's Star, ...) give a
    feature above 1 sigma after 10 transits.

    Raises:
        ValueError: fewer such host stars than ``n`` (the message gives how many there are).
    """
    ok = eligible(planets, saturation)
    if len(ok) < n:
        raise ValueError(f"only {len(ok)} host stars have a rocky planet with radius, period, stellar temperature, "
                         f"radius and distance in the catalog"
                         + (" and are fainter than PRISM's bright limit" if saturation == "exclude" else "")
                         + f"; asked for {n}")
    return ok.head(n).reset_index(drop=True)


def eligible(planets: pd.DataFrame, saturation: str = "keep") -> pd.DataFrame:
    """Every rocky planet the gas-detection task can simulate, one per host star, best first, with
    ``j_mag``, ``j_mag_source`` and ``saturates_prism``; ``saturation: exclude`` drops the hosts PRISM
    saturates on.

    Raises:
        ValueError: an unknown ``saturation``.
    """
    if saturation not in obs.SATURATION_CHOICES:
        raise ValueError(f"saturation: {saturation!r}: one of {obs.SATURATION_CHOICES}")
    need = ["pl_rade", "st_teff", "st_rad", "sy_dist", "pl_orbper"]
    ok = planets[(planets["pl_rade"] <= ROCKY_MAX_RADIUS_REARTH) & planets[need].notna().all(axis=1)
                 & (planets["st_teff"] >= 2300) & (planets["st_teff"] <= 7000)].copy()
    records = ok.to_dict("records")
    ok["feature_snr_10"] = [feature_snr(r) for r in records]
    j = [obs.j_magnitude(r) for r in records]
    ok["j_mag"] = [v for v, _ in j]
    ok["j_mag_source"] = [s for _, s in j]
    ok["saturates_prism"] = [obs.saturates(r) for r in records]
    ok = ok.sort_values(["feature_snr_10", "pl_name"], ascending=[False, True]).drop_duplicates("hostname")
    return ok[~ok["saturates_prism"]] if saturation == "exclude" else ok


def saturation_record(planets: pd.DataFrame, chosen: pd.DataFrame, saturation: str) -> dict[str, Any]:
    """What a set records of the bright limit: the mode, the limit, the saturating hosts left out
    (those that would have been chosen) and the saturating hosts kept."""
    every = eligible(planets, "keep")
    left_out = []
    if saturation == "exclude":
        # the saturating hosts ranked above the last chosen planet: the ones the limit displaced
        last = chosen["feature_snr_10"].min() if len(chosen) else np.inf
        left_out = every[every["saturates_prism"] & (every["feature_snr_10"] >= last)]["hostname"].tolist()
    kept = chosen[chosen["saturates_prism"]]["hostname"].tolist() if "saturates_prism" in chosen else []
    return {"mode": saturation, "limit_j_mag": obs.PRISM_SATURATION_J, "instrument": "NIRSpec PRISM BOTS SUB512",
            "source": "Birkmann et al. 2022, A&A 661, A83; JWST User Documentation (ETC for a given target)",
            "excluded_hosts": left_out, "saturating_hosts_kept": kept}


class ChunkedDepth:
    """The noiseless depths [n, bins] of a set, read from the store's chunks when an index touches
    them (each chunk's sha256 checked on its first read; the last ``cache`` chunks kept), so a
    million-spectrum set is never held in memory."""

    def __init__(self, chunks: list[dict[str, Any]], bins: int, cache: int = 512):
        self.chunks = chunks  # {"path", "sha256", "offset", "start", "stop"} in spectrum order
        self.offsets = np.array([c["offset"] for c in chunks] + [chunks[-1]["offset"] + chunks[-1]["count"]
                                                                  if chunks else 0])
        self.shape = (int(self.offsets[-1]), bins)
        self.dtype = np.dtype(np.float64)
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def _chunk(self, k: int) -> np.ndarray:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        c = self.chunks[k]
        arrays = st.read_chunk(Path(c["path"]), c["sha256"])
        depth = arrays["depth"][c["use_from"]:c["use_from"] + c["count"]]
        self._cache[k] = depth
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return depth

    def rows(self, index) -> np.ndarray:
        """The depths of spectra ``index`` (an int, slice or integer array)."""
        idx = np.arange(self.shape[0])[index] if isinstance(index, slice) else np.asarray(index)
        scalar = idx.ndim == 0
        idx = np.atleast_1d(idx).astype(int)
        if len(idx) and (idx.min() < -self.shape[0] or idx.max() >= self.shape[0]):
            raise IndexError(f"spectrum index out of range 0..{self.shape[0] - 1}")
        idx = np.where(idx < 0, idx + self.shape[0], idx)
        out = np.empty((len(idx), self.shape[1]))
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        for k in np.unique(which):
            at = which == k
            out[at] = self._chunk(int(k))[idx[at] - self.offsets[k]]
        return out[0] if scalar else out

    def __getitem__(self, index):
        if isinstance(index, tuple):  # depth[rows, bins]
            rows = self.rows(index[0])
            return rows[index[1:]] if rows.ndim == 1 else rows[(slice(None), *index[1:])]
        return self.rows(index)

    def __array__(self, dtype=None, copy=None):
        out = self.rows(slice(None))
        return out.astype(dtype) if dtype is not None else out


@dataclass
class GasSpectra:
    """Noiseless spectra, their truths and noise (arrays over spectra; see the module docstring)."""

    edges_um: np.ndarray  # [bins + 1]
    wavelength_um: np.ndarray  # [bins] bin centres
    depth: Any  # [n, bins] noiseless transit depth (an array, or ChunkedDepth read from the store)
    planet_sigma_transit: np.ndarray  # [planets, bins] photon noise of one transit (the floor is added per N)
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

    @property
    def sigma_transit(self) -> np.ndarray:
        """[n, bins] per-transit photon noise of every spectrum."""
        return self.planet_sigma_transit[self.planet]

    def sigma(self, n_transits: float, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """[n or len(rows), bins] depth uncertainty after ``n_transits`` (photon noise averages down,
        the floor stays)."""
        per_transit = self.planet_sigma_transit[self.planet if rows is None else self.planet[np.asarray(rows)]]
        return np.sqrt(per_transit**2 / n_transits + (self.manifest["generator"]["noise_floor_ppm"] * 1e-6) ** 2)

    @functools.cached_property
    def latent(self) -> np.ndarray:
        """[n, gases + 1] the *latent* values of every spectrum: log10 VMR of each gas — its abundance
        where present, else the abundance it would have had, drawn from its prior (it changes no
        spectrum) — and log10 cloud-top pressure (the deck's, else drawn between its prior's bounds).
        What the retrieval posterior is trained on and the oracle's absent-gas companions use. The
        draws are fixed per set (from its seed and key), so every reader gets the same values."""
        n = len(self.present)
        key = str(self.manifest.get("cache_key") or "0")
        rng = np.random.default_rng([int(self.manifest.get("seed", 0)), 0x1A7E47, int(key[:12], 16) if
                                     all(c in "0123456789abcdef" for c in key[:12]) else 0])
        lo, hi = np.array([tx.VMR_PRIORS[g] for g in tx.GASES]).T
        drawn = rng.uniform(lo, hi, size=(n, len(tx.GASES)))
        vmr = np.where(self.present, self.log10_vmr, drawn)
        cloud_draw = rng.uniform(tx.LOG10_CLOUD_TOP_MIN_PA, self.log10_surface_pressure_pa)
        cloud = np.where(np.isfinite(self.log10_cloud_top_pa), self.log10_cloud_top_pa, cloud_draw)
        return np.column_stack([vmr, cloud])

    def catalog_features(self) -> np.ndarray:
        """[n, k] the planet's catalog columns (:data:`CATALOG_FEATURES`; a column no planet has —
        e.g. in the synthetic catalog — is left out)."""
        x = self.planets.reindex(columns=list(CATALOG_FEATURES)).to_numpy(dtype=float)
        return x[:, ~np.all(np.isnan(x), axis=0)][self.planet]


def noise(ds: GasSpectra, rows: np.ndarray, n_transits: np.ndarray | float, z_photon: np.ndarray,
          z_floor: np.ndarray, floor: str = "white") -> np.ndarray:
    """Noise [len(rows), bins] from standard normals: photon noise of each row's star after
    ``n_transits`` (per row or one value) plus the systematic floor of model ``floor``
    (:mod:`astrobio_lib.data.observing`)."""
    per_transit = ds.planet_sigma_transit[ds.planet[np.asarray(rows, dtype=int)]]
    n = np.broadcast_to(np.asarray(n_transits, dtype=float), (len(per_transit),))[:, None]
    return z_photon * per_transit / np.sqrt(n) + floor_noise(ds, floor).draw(z_floor)


@functools.lru_cache(maxsize=8)
def _floor_noise(wavelength: tuple[float, ...], floor: str, floor_ppm: float) -> obs.FloorNoise:
    return obs.FloorNoise(np.array(wavelength), floor, floor_ppm)


def floor_noise(ds: GasSpectra, floor: str) -> obs.FloorNoise:
    """The floor model ``floor`` on the set's wavelengths (its recorded floor amplitude)."""
    return _floor_noise(tuple(ds.wavelength_um.tolist()), floor, float(ds.manifest["generator"]["noise_floor_ppm"]))


def covariance(ds: GasSpectra, planet: int, n_transits: float, floor: str = "white") -> np.ndarray:
    """[bins, bins] the noise covariance of a spectrum of planet ``planet`` after ``n_transits``."""
    return np.diag(ds.planet_sigma_transit[planet] ** 2 / n_transits) + floor_noise(ds, floor).covariance


def noisy(ds: GasSpectra, rows: np.ndarray, n_transits: float, draws: int, seed: int,
          floor: str = "white") -> tuple[np.ndarray, np.ndarray]:
    """Returns (noisy depths [len(rows) * draws, bins], the noiseless row of each) — Gaussian noise
    after ``n_transits`` transits (:func:`noise`, floor model ``floor``), ``draws`` independent draws
    per spectrum, from ``seed``. The white model's draws are those of every earlier version."""
    rng = np.random.default_rng(seed)
    rep = np.repeat(np.asarray(rows, dtype=int), draws)
    z = rng.standard_normal((len(rep), ds.depth.shape[1]))
    if floor == "white":  # one normal per bin with the bin's total sigma: the draws of earlier versions
        return ds.depth[rep] + z * ds.sigma(n_transits, rep), rep
    return ds.depth[rep] + noise(ds, rep, n_transits, z, rng.standard_normal(z.shape), floor), rep


# --------------------------------------------------------------------------- the run's set


def set_key(planet_keys: list[str], atmospheres_per_planet: int) -> str:
    """The identity of a set: its planets' store entries (each the content address of a planet's
    spectra: catalog values, seed, priors, generator, tables) in order, and the atmospheres per planet."""
    payload = {"store": st.STORE_VERSION, "planets": planet_keys, "atmospheres_per_planet": int(atmospheres_per_planet)}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def build_or_load(folder: Path, planets: pd.DataFrame, atmospheres_per_planet: int, seed: int,
                  progress: Optional[Callable[[int, int], None]] = None, catalog: Optional[dict[str, Any]] = None,
                  store: Optional[str | Path] = None, workers: int = -1, scheduler: Optional[str] = None,
                  saturation: Optional[dict[str, Any]] = None) -> tuple[GasSpectra, bool]:
    """Returns (the spectra of ``planets`` x ``atmospheres_per_planet``, whether nothing had to be
    generated): the store's missing (or corrupt) chunks are generated first (:mod:`.spectra_store`:
    ``workers`` LocalCluster processes, -1 every core, 0 this process; or the Dask ``scheduler``),
    then the run's set in ``folder`` is written (planets, truths, then the manifest, atomically) and
    loaded back with every digest checked. ``catalog`` (the catalog's provenance) and ``saturation``
    (:func:`saturation_record`) are recorded in the manifest.

    Raises:
        spectra_store.GenerationInterrupted: SIGTERM / SIGINT during generation (finished chunks kept).
    """
    folder = Path(folder)
    spectra = st.SpectraStore(store)
    rows = planets.to_dict("records")
    identity = st.generator_identity()
    entries = [spectra.entry(r, seed, identity, create=False) for r in rows]
    missing = sum(len(e.plan(atmospheres_per_planet)[1]) for e in entries)
    stats = st.GenerationStats(spectra_total=len(rows) * atmospheres_per_planet)
    if missing:
        stats = st.run_generation(rows, atmospheres_per_planet, seed, spectra, workers, scheduler, progress)
    else:
        log.info("spectra store %s: all %d spectra (%d planets x %d atmospheres) present and verified: reused",
                 spectra.base, stats.spectra_total, len(rows), atmospheres_per_planet)
        if progress:
            progress(stats.spectra_total, stats.spectra_total)
    key = set_key([e.key for e in entries], atmospheres_per_planet)
    write_set(folder, spectra, planets, [spectra.entry(r, seed, identity) for r in rows], atmospheres_per_planet,
              seed, key, identity, stats, catalog, saturation)
    return load(folder), not missing


def write_set(folder: Path, spectra: st.SpectraStore, planets: pd.DataFrame, entries: list[st.PlanetEntry], n: int,
              seed: int, key: str, identity: dict[str, Any], stats: st.GenerationStats,
              catalog: Optional[dict[str, Any]], saturation: Optional[dict[str, Any]] = None) -> Path:
    """Writes a run's set: ``planets.parquet`` and ``truths.npz`` (atomically), then ``manifest.json``
    (atomically, last) with the store, every chunk used and every digest."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks, truths, index = [], {k: [] for k in TRUTHS}, []
    offset = 0
    for p, entry in enumerate(entries):
        used, missing = entry.plan(n, check=False)
        if missing:
            raise st.StoreCorrupt(f"store entry {entry.folder} lacks atmospheres {missing}: generation did not finish")
        for c in used:
            count = min(c.stop, n) - c.start
            sha = c.path.with_name(c.name + ".sha256").read_text().split()[0]
            arrays = st.read_chunk(c.path, sha)
            for k in TRUTHS:
                truths[k].append(arrays[k][:count])
            chunks.append({"path": str(c.path), "sha256": sha, "offset": offset, "count": count, "use_from": 0,
                           "planet": p, "start": c.start, "stop": c.start + count})
            offset += count
        index.append({"planet": p, "key": entry.key, "pl_name": str(planets.iloc[p]["pl_name"]), "atmospheres": n,
                      "chunks": [c.name for c in used]})
    sigma = np.stack([np.asarray(entry.meta()["sigma_transit"]) for entry in entries])
    buf = io.BytesIO()
    np.savez(buf, **{k: np.concatenate(v) for k, v in truths.items()}, planet_sigma_transit=sigma,
             planet=np.repeat(np.arange(len(entries)), n))
    pbuf = io.BytesIO()
    planets.reset_index(drop=True).to_parquet(pbuf)
    # the files a manifest names carry their digest in their name: a new set never overwrites the files
    # the current manifest names, so a crash before the new manifest is published leaves the old set whole
    files = {}
    for role, suffix, payload in (("planets", "parquet", pbuf.getvalue()), ("truths", "npz", buf.getvalue())):
        digest = hashlib.sha256(payload).hexdigest()
        name = f"{role}-{digest[:16]}.{suffix}"
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            atomic_write(folder / name, payload)
        files[role] = {"file": name, "sha256": digest}
    op = tx.opacity_manifest()
    manifest = {"format": FORMAT, "simulated": True,
                "what": "SIMULATED JWST NIRSpec PRISM transmission spectra of real catalog planets; atmospheres "
                        "drawn from priors (the truth)",
                "cache_key": key, "seed": seed, "atmospheres_per_planet": n, "n_spectra": offset,
                "n_planets": len(entries), "store": str(spectra.base), "planets_index": index, "chunks": chunks,
                "generator": tx.describe(), "opacities": op, "identity": identity, "files": files,
                "generation": stats.to_dict(), **({"catalog": catalog} if catalog is not None else {}),
                **({"saturation": saturation} if saturation is not None else {})}
    atomic_write(folder / "manifest.json", json.dumps(manifest, indent=1, default=str))
    for old in folder.glob("*-*.*"):  # files of an earlier set that no manifest names any more
        if old.name not in {f["file"] for f in files.values()} and old.name.startswith(("planets-", "truths-")):
            old.unlink(missing_ok=True)
    return folder


def _checked(folder: Path, name: str, expected: Optional[str]) -> Path:
    path = folder / name
    if not path.is_file():
        raise SpectraCorrupt(f"{path} is missing: run 01_data_validation again (it rebuilds the set)")
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise SpectraCorrupt(f"{path} is corrupt: sha256 {actual} but the manifest records {expected} — run "
                                 f"01_data_validation again (it rebuilds the set)")
    return path


def load(folder: Path) -> GasSpectra:
    """The set in ``folder`` (a run's link to the store, or an exported ``spectra.npz`` set), every
    file checked against the digests its manifest records (store chunks when they are read).

    Raises:
        FileNotFoundError: no set in ``folder`` (01 generates it).
        SpectraCorrupt: a file is missing, truncated or does not match its digest (named, with the fix).
    """
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no gas-detection spectra in {folder}: run 01_data_validation (it generates them)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise SpectraCorrupt(f"{path} is unreadable ({exc}): run 01_data_validation again (it rebuilds the set)") from exc
    files = manifest.get("files", {})
    edges = tx.PRISM_EDGES_UM
    try:
        if manifest.get("format", 1) >= 2:
            planets = pd.read_parquet(_checked(folder, files["planets"]["file"], files["planets"]["sha256"]))
            with np.load(_checked(folder, files["truths"]["file"], files["truths"]["sha256"])) as z:
                t = {k: z[k] for k in z.files}
            depth = ChunkedDepth(manifest["chunks"], len(edges) - 1)
            return GasSpectra(edges, np.sqrt(edges[:-1] * edges[1:]), depth, t["planet_sigma_transit"], t["present"],
                              t["log10_vmr"], t["temperature_k"], t["log10_surface_pressure_pa"],
                              t["log10_cloud_top_pa"], t["planet"], planets, manifest)
        planets = pd.read_parquet(_checked(folder, "planets.parquet", files.get("planets.parquet")))
        with np.load(_checked(folder, "spectra.npz", files.get("spectra.npz"))) as z:
            a = {k: z[k] for k in z.files}
    except SpectraCorrupt:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:  # a truncated zip / parquet, a missing array
        raise SpectraCorrupt(f"the gas-detection spectra in {folder} cannot be read ({type(exc).__name__}: "
                             f"{str(exc)[:200]}): run 01_data_validation again (it rebuilds the set)") from exc
    planet = a["planet"]
    first = np.array([np.flatnonzero(planet == p)[0] for p in range(len(planets))])
    return GasSpectra(a["edges_um"], a["wavelength_um"], a["depth"], a["sigma_transit"][first], a["present"],
                      a["log10_vmr"], a["temperature_k"], a["log10_surface_pressure_pa"], a["log10_cloud_top_pa"],
                      planet, planets, manifest)


def save(ds: GasSpectra, folder: Path, key: Optional[str] = None) -> Path:
    """Exports ``ds`` to a self-contained folder (``spectra.npz``, ``planets.parquet``, ``manifest.json``
    with their sha256), published atomically: written into a temporary folder, then renamed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(folder)
    tmp.mkdir()
    try:
        np.savez_compressed(tmp / "spectra.npz", edges_um=ds.edges_um, wavelength_um=ds.wavelength_um,
                            depth=np.asarray(ds.depth), sigma_transit=ds.sigma_transit, present=ds.present,
                            log10_vmr=ds.log10_vmr, temperature_k=ds.temperature_k,
                            log10_surface_pressure_pa=ds.log10_surface_pressure_pa,
                            log10_cloud_top_pa=ds.log10_cloud_top_pa, planet=ds.planet)
        ds.planets.to_parquet(tmp / "planets.parquet")
        manifest = {k: v for k, v in ds.manifest.items() if k not in ("chunks", "files", "planets_index", "store")}
        manifest.update({"format": 1, "cache_key": key or ds.manifest.get("cache_key"),
                         "files": {f: sha256_file(tmp / f) for f in ("spectra.npz", "planets.parquet")}})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        fsync_dir(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m astrobio_lib.data.gas_spectra generate`` (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.data.gas_spectra",
                                     description="Fill the spectra store with the SIMULATED spectra of a gas-detection "
                                                 "set (only what is missing), on every core or on a Dask cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate the spectra of a set into the store")
    gen.add_argument("--gas-planets", type=int, default=40, help="rocky planets (one per host star), as gas_planets")
    gen.add_argument("--atmospheres", type=int, default=10, help="atmospheres per planet, as gas_atmospheres")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--saturation", choices=obs.SATURATION_CHOICES, default="exclude",
                     help="hosts NIRSpec PRISM saturates on (J < 10.5): exclude (default) or keep, as the parameter")
    gen.add_argument("--catalog", default="snapshot", help="catalog_source: snapshot | auto | archive | file")
    gen.add_argument("--catalog-path", default=None)
    gen.add_argument("--store", default=None, help=f"store folder (default: env {st.ENV_STORE} or the user cache)")
    gen.add_argument("--workers", type=int, default=-1,
                     help="LocalCluster worker processes (-1: every core; 0: this process)")
    gen.add_argument("--scheduler", default=None, help=f"an existing Dask scheduler (env {st.ENV_SCHEDULER})")
    gen.add_argument("--export", default=None, help="also export the set to this folder (spectra.npz format)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stdout)
    tx.quiet_taurex()
    from astrobio_lib.data import catalog

    planets, provenance = catalog.load_catalog(args.catalog, args.catalog_path)
    rows = rocky_planets(planets, args.gas_planets, args.saturation)
    store = st.SpectraStore(args.store)
    try:
        stats = st.generate_missing(store, rows.to_dict("records"), args.atmospheres, args.seed, args.workers,
                                    st.scheduler_address(args.scheduler))
    except st.GenerationInterrupted as exc:
        print(f"astrobio gas_spectra: {exc}", file=sys.stderr)
        return st.INTERRUPTED_EXIT
    if args.export:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ds, _ = build_or_load(Path(tmp) / "set", rows, args.atmospheres, args.seed, store=args.store, workers=0,
                                  catalog=provenance.to_dict(),
                                  saturation=saturation_record(planets, rows, args.saturation))
            save(ds, Path(args.export))
    print(json.dumps({"store": str(store.base), "catalog": provenance.source, **stats.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
