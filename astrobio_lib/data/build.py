"""Build a run's dataset into ``outputs/<run>/data``: labels for every catalog planet, then shards
of the sampled planets with every modality, and a manifest with checksums.

Files:
- ``labels.csv``: ``pl_name, hostname, hz_conservative, hz_optimistic, rocky, habitable_phl,
  habitable, esi, p_habitable, split`` for *every* catalog planet (empty = undetermined).
- ``shard_NNNNN.pt``: tensors of up to ``shard_size`` planets (load with ``weights_only=True``).
- ``graphs.pt``: the metabolic-graph variants, stored once; planets refer to them by id.
- ``manifest.json``: record ids, splits, modality masks, every input's source, version and
  sha256, synthetic flags per modality, feature names and normalisation, prevalence. Written
  last and atomically: a build that stopped early has no manifest and is redone.

Idempotent: a manifest whose ``build_sha256`` matches the configuration and whose shards verify
is reused as is; shards whose bytes would not change are not rewritten.

Subset: with ``n_planets > 0`` the build keeps every planet with P(habitable) > 0 and every planet
inside the climate emulator's domain, then fills up with a seeded random sample. That enriches
positives; the manifest records the prevalence of the subset next to the catalog's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from astrobio_lib.config import DataConfig
from astrobio_lib.data import atmosphere as atm_mod
from astrobio_lib.data import climate as climate_mod
from astrobio_lib.data import metabolism, spectra, text
from astrobio_lib.data.catalog import Provenance
from astrobio_lib.data.habitable_zone import label_table
from astrobio_lib.data.loader import split_by_host
from astrobio_lib.data.validate import findings_as_dicts, validate_catalog, validate_labels
from astrobio_lib.fsutil import atomic_write, sha256_file

log = logging.getLogger(__name__)

BUILD_VERSION = 2
SPECTRUM_BINS = 64
LABEL_COLUMNS = ["pl_name", "hostname", "hz_conservative", "hz_optimistic", "rocky",
                 "habitable_phl", "habitable", "esi", "p_habitable", "split"]
CATALOG_FEATURES = (
    "log10_insolation", "teff_over_sun", "log10_radius", "log10_mass", "log10_period",
    "log10_semi_major_axis", "eccentricity", "log10_star_radius", "log10_star_mass",
    "star_metallicity", "star_logg", "log10_star_luminosity", "esi", "log10_distance",
    "radius_relative_error", "planets_in_system")


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def write_labels(catalog: pd.DataFrame, provenance: Provenance, data_cfg: DataConfig, seed: int,
                 out_dir: str | Path) -> pd.DataFrame:
    """Computes labels and host-grouped splits for every catalog planet, writes
    ``labels.csv`` (booleans; empty where undetermined) and ``catalog_provenance.json`` into
    ``out_dir``, and returns the label table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = label_table(catalog, n_samples=data_cfg.label_mc_samples, seed=seed)
    train = 1.0 - data_cfg.val_fraction - data_cfg.test_fraction
    labels["split"] = split_by_host(labels["hostname"], (train, data_cfg.val_fraction,
                                                         data_cfg.test_fraction),
                                    seed=seed, positive=labels["p_habitable"])
    labels = labels[LABEL_COLUMNS]
    buf = io.StringIO()
    labels.to_csv(buf, index=False)
    atomic_write(out_dir / "labels.csv", buf.getvalue().encode())
    provenance.save(out_dir)
    return labels


def catalog_features(catalog: pd.DataFrame, esi: np.ndarray) -> np.ndarray:
    """Returns the raw (unstandardised) catalog feature matrix [planets, 16], NaN where missing."""
    c = catalog

    def log10(col):
        v = c[col].to_numpy(float)
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)

    rel_err = (c["pl_radeerr1"].abs() + c["pl_radeerr2"].abs()).to_numpy(float) / (2 * c["pl_rade"].to_numpy(float))
    return np.stack([
        log10("pl_insol"), c["st_teff"].to_numpy(float) / 5772.0, log10("pl_rade"), log10("pl_bmasse"),
        log10("pl_orbper"), log10("pl_orbsmax"), c["pl_orbeccen"].to_numpy(float), log10("st_rad"),
        log10("st_mass"), c["st_met"].to_numpy(float), c["st_logg"].to_numpy(float), log10("st_lum"),
        esi, log10("sy_dist") if "sy_dist" in c else np.full(len(c), np.nan), rel_err,
        c["sy_pnum"].to_numpy(float) if "sy_pnum" in c else np.full(len(c), np.nan),
    ], axis=1).astype(np.float64)


def select_planets(labels: pd.DataFrame, in_climate_domain: np.ndarray, n_planets: int, seed: int) -> np.ndarray:
    """Returns the sorted row positions of the planets to build (all when ``n_planets`` is 0)."""
    n = len(labels)
    if n_planets <= 0 or n_planets >= n:
        return np.arange(n)
    must = np.flatnonzero((labels["p_habitable"].fillna(0).to_numpy() > 0) | in_climate_domain)
    rng = np.random.default_rng(seed)
    rest = np.setdiff1d(np.arange(n), must)
    fill = rng.choice(rest, size=max(0, n_planets - len(must)), replace=False) if n_planets > len(must) else []
    return np.sort(np.concatenate([must, np.asarray(fill, dtype=int)]))


def build_sha256(data_cfg: DataConfig, seed: int, provenance: Provenance, tokenizer=None) -> str:
    """Returns the identity of a build: configuration, seed, catalog checksum, build version, and
    the tokenizer's sha256 when it is a checkpoint's (so another tokenizer never reuses a build)."""
    # the simulated spectra of data/gas_spectra.py are a separate, separately cached set
    data = {k: v for k, v in dataclasses.asdict(data_cfg).items() if not k.startswith("gas_")}
    payload = {"data": data, "seed": seed, "catalog": provenance.sha256, "version": BUILD_VERSION}
    if tokenizer is not None and tokenizer.sha256:
        payload["tokenizer"] = tokenizer.sha256
    return _sha256(json.dumps(payload, sort_keys=True).encode())


def load_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        log.warning("%s is unreadable: the dataset will be rebuilt", path)
        return None


def verify_files(out_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Returns the files of a manifest that are missing or fail their sha256."""
    bad = []
    for entry in [*manifest["shards"], manifest["graphs"]]:
        path = out_dir / entry["file"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            bad.append(entry["file"])
    return bad


def build_dataset(catalog: pd.DataFrame, provenance: Provenance, data_cfg: DataConfig, seed: int,
                  out_dir: str | Path, tokenizer=None) -> dict[str, Any]:
    """Builds (or reuses) the dataset in ``out_dir`` and returns its manifest; ``tokenizer``
    (:func:`text.tokenizer_for`) makes ``text_ids`` — byte-level when None."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or text.ByteTokenizer()
    identity = build_sha256(data_cfg, seed, provenance, tokenizer)
    existing = load_manifest(out_dir)
    if existing and existing.get("build_sha256") == identity:
        bad = verify_files(out_dir, existing)
        if not bad and (out_dir / "labels.csv").is_file():
            log.info("dataset in %s is up to date (build %s): reused", out_dir, identity[:12])
            existing["reused"] = True
            return existing
        log.warning("dataset in %s: %s missing or corrupt: rebuilding", out_dir, ", ".join(bad) or "labels.csv")

    t0 = time.perf_counter()
    catalog_report = validate_catalog(catalog)
    catalog_report.raise_if_fatal(f"catalog ({provenance.location})")
    labels = write_labels(catalog, provenance, data_cfg, seed, out_dir)
    catalog_report.findings += validate_labels(labels).findings  # fatal ones make the data verdict FAIL
    t_eq_k = catalog["pl_eqt"].to_numpy(float)
    t_eq_k = np.where(np.isfinite(t_eq_k), t_eq_k, atm_mod.equilibrium_temperature_k(catalog["pl_insol"]))
    atmospheres = atm_mod.draw_atmospheres(labels["p_habitable"].to_numpy(float), t_eq_k, seed=seed)
    domain = climate_mod.clero_inputs(catalog, atmospheres, data_cfg.climate_domain)["in_domain"].to_numpy()
    rows = select_planets(labels, domain, data_cfg.n_planets, seed)
    sub = catalog.iloc[rows].reset_index(drop=True).assign(t_eq_k=t_eq_k[rows])
    sub_labels = labels.iloc[rows].reset_index(drop=True)
    sub_atm = atmospheres.iloc[rows].reset_index(drop=True)
    n = len(rows)
    log.info("building %d planets (%d in the climate domain)", n, int(domain[rows].sum()))

    climate = climate_mod.emulate(sub, sub_atm, data_cfg.climate_domain)
    climate_index = np.full(n, -1, dtype=np.int64)
    climate_index[climate.inputs["in_domain"].to_numpy()] = np.arange(int(climate.inputs["in_domain"].sum()))
    climate_state = np.full(n, -1, dtype=np.int64)
    climate_state[climate_index >= 0] = climate.state

    wl, depth_ppm, sigma_ppm = spectra.observe(sub, sub_atm, SPECTRUM_BINS, seed=seed)
    has_spectrum = np.isfinite(depth_ppm).all(axis=1)
    # each spectrum relative to its own median, in units of its noise (features above the noise)
    spectrum = np.zeros_like(depth_ppm)
    spectrum[has_spectrum] = ((depth_ppm[has_spectrum] - np.median(depth_ppm[has_spectrum], axis=1, keepdims=True))
                              / sigma_ppm[has_spectrum, None])

    model = metabolism.load_model(data_cfg.metabolic_model)
    graphs = {v: metabolism.to_graph(model, v) for v in metabolism.VARIANTS}
    graph_id = metabolism.variant_for(sub_atm["O2"].to_numpy())

    tokens = [tokenizer.encode(text.describe(row), data_cfg.text_max_len) for _, row in sub.iterrows()]
    text_ids = np.stack([t[0] for t in tokens])
    text_mask = np.stack([t[1] for t in tokens])

    raw = catalog_features(sub, sub_labels["esi"].to_numpy(float))
    train = sub_labels["split"].to_numpy() == "train"
    mean = np.nanmean(np.where(train[:, None], raw, np.nan), axis=0)
    std = np.nanstd(np.where(train[:, None], raw, np.nan), axis=0)
    mean, std = np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)
    feat_mask = np.isfinite(raw)
    features = np.where(feat_mask, (raw - mean) / std, 0.0)
    t_eq_cat = sub["pl_eqt"].to_numpy(float)
    t_mean = float(np.nanmean(np.where(train, t_eq_cat, np.nan)))
    t_std = float(np.nanstd(np.where(train, t_eq_cat, np.nan))) or 1.0
    biosignature = np.where(has_spectrum, sub_atm["biosignature"].to_numpy(float), np.nan)

    graphs_payload = {f"{v}_{k}": t for v, g in graphs.items() for k, t in (("x", g.x), ("edge_index", g.edge_index))}
    buf = io.BytesIO()
    torch.save(graphs_payload, buf)
    graphs_bytes = buf.getvalue()
    _write_if_changed(out_dir / "graphs.pt", graphs_bytes)

    shards = []
    for start in range(0, n, data_cfg.shard_size):
        sl = slice(start, min(n, start + data_cfg.shard_size))
        ci = climate_index[sl]
        cubes = climate.cubes[ci[ci >= 0]] if climate.cubes is not None and (ci >= 0).any() else \
            np.zeros((0, 2, 10, 32, 64), np.float32)
        local_ci = np.full(len(ci), -1, dtype=np.int64)
        local_ci[ci >= 0] = np.arange(int((ci >= 0).sum()))
        payload = {
            "record": torch.arange(sl.start, sl.stop),
            "catalog": torch.from_numpy(features[sl].astype(np.float32)),
            "catalog_mask": torch.from_numpy(feat_mask[sl]),
            "climate": torch.from_numpy(np.ascontiguousarray(cubes)),
            "climate_index": torch.from_numpy(local_ci),
            "graph_id": torch.from_numpy(graph_id[sl].astype(np.int64)),
            "spectrum": torch.from_numpy(spectrum[sl].astype(np.float32)),
            "has_spectrum": torch.from_numpy(has_spectrum[sl]),
            "text_ids": torch.from_numpy(text_ids[sl]),
            "text_mask": torch.from_numpy(text_mask[sl]),
            "p_habitable": torch.from_numpy(sub_labels["p_habitable"].to_numpy(np.float32)[sl]),
            "climate_state": torch.from_numpy(climate_state[sl]),
            "biosignature": torch.from_numpy(biosignature[sl].astype(np.float32)),
            "t_eq": torch.from_numpy(((t_eq_cat[sl] - t_mean) / t_std).astype(np.float32)),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        name = f"shard_{start // data_cfg.shard_size:05d}.pt"
        _write_if_changed(out_dir / name, buf.getvalue())
        shards.append({"file": name, "sha256": _sha256(buf.getvalue()), "rows": sl.stop - sl.start})

    catalog_synthetic = provenance.synthetic
    import cobra

    hab_sub = sub_labels["habitable"]
    manifest = {
        "build_version": BUILD_VERSION,
        "build_sha256": identity,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seed": seed,
        "config": dataclasses.asdict(data_cfg),
        "catalog": provenance.to_dict(),
        "catalog_findings": findings_as_dicts(catalog_report),
        "synthetic": catalog_synthetic,
        "modalities": {
            "catalog": {"source": provenance.source, "synthetic": catalog_synthetic,
                        "note": "NASA Exoplanet Archive PSCompPars" if not catalog_synthetic else "SYNTHETIC population"},
            "atmosphere": {"source": "astrobio_lib.data.atmosphere priors", "synthetic": True,
                           "note": "assumed: drawn from documented priors (the catalog has none)"},
            "climate": {"source": f"clero {climate.version}", "sha256": climate.emulator_sha256,
                        "synthetic": True, "domain": data_cfg.climate_domain,
                        "note": "emulated GCM climate for the assumed atmosphere"},
            "spectrum": {"source": "astrobio_lib.data.spectra analytic model + JWST-like noise",
                         "synthetic": True, "bins": SPECTRUM_BINS,
                         "wavelength_um": [round(float(w), 4) for w in wl]},
            "metabolism": {"source": f"cobra {cobra.__version__} model {data_cfg.metabolic_model}",
                           "synthetic": False, "variants": list(metabolism.VARIANTS),
                           "note": "real genome-scale model; planet assignment by assumed O2"},
            "text": {"source": "generated from catalog rows", "synthetic": catalog_synthetic,
                     **tokenizer.identity(), "max_len": data_cfg.text_max_len},
        },
        "catalog_features": list(CATALOG_FEATURES),
        "normalisation": {"catalog_mean": mean.tolist(), "catalog_std": std.tolist(),
                          "t_eq_mean_k": t_mean, "t_eq_std_k": t_std},
        "records": [{"pl_name": r.pl_name, "hostname": r.hostname, "split": r.split} for r in sub_labels.itertuples()],
        "coverage": {"planets": n, "climate": int((climate_index >= 0).sum()), "spectrum": int(has_spectrum.sum()),
                     "graph": n, "text": n, "catalog_features_present": feat_mask.mean(axis=0).round(3).tolist()},
        "prevalence": {
            "catalog_habitable_%": round(100 * float((labels["habitable"] == True).sum())  # noqa: E712
                                         / max(1, int(labels["habitable"].notna().sum())), 3),
            "subset_habitable_%": round(100 * float((hab_sub == True).sum()) / max(1, int(hab_sub.notna().sum())), 3),  # noqa: E712
            "subset_enriched": bool(0 < data_cfg.n_planets < len(labels)),
        },
        "splits": sub_labels["split"].value_counts().to_dict(),
        "shards": shards,
        "graphs": {"file": "graphs.pt", "sha256": _sha256(graphs_bytes),
                   "nodes": {v: int(g.num_nodes) for v, g in graphs.items()},
                   "edges": {v: int(g.edge_index.shape[1]) for v, g in graphs.items()}},
        "atmospheres": sub_atm.assign(pl_name=sub_labels["pl_name"]).round(8).to_dict("records"),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=1, default=_json_default).encode())
    manifest["reused"] = False
    log.info("dataset built in %.1f s: %d planets, %d shards", manifest["build_seconds"], n, len(shards))
    return manifest


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    raise TypeError(type(obj))


def _write_if_changed(path: Path, payload: bytes) -> None:
    if path.is_file() and sha256_file(path) == _sha256(payload):
        return
    atomic_write(path, payload)


def build_for_config(cfg, data_dir: Optional[str | Path] = None) -> dict[str, Any]:
    """Builds (or reuses) the dataset of a run configuration in ``<run_dir>/data`` — what notebook
    01 does, for scripts and tests — and returns its manifest."""
    from astrobio_lib.data import catalog

    data_dir = Path(data_dir) if data_dir else Path(cfg.run.run_dir) / "data"
    planets, prov = catalog.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path, cache_dir=data_dir)
    return build_dataset(planets, prov, cfg.data, cfg.run.seed, data_dir,
                         tokenizer=text.tokenizer_for(cfg.model.llm_checkpoint))
