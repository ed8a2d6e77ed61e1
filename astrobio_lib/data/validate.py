"""Every data check, returning a structured report: severity, check, affected records, fix.

Severities: ``fatal`` (the loader refuses the data), ``warn`` (shown, training may proceed),
``info`` (context such as prevalence and coverage). :func:`validate_catalog` checks the planet
table before a build; :func:`validate_dataset` checks a built dataset folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from astrobio_lib.fsutil import sha256_file

SEVERITIES = ("fatal", "warn", "info")
CUBE_SHAPE = (2, 10, 32, 64)


class DataValidationError(ValueError):
    """The data has fatal findings; the message lists each with its fix."""


@dataclass
class Finding:
    severity: str
    check: str
    message: str
    fix: str = ""
    affected: list[str] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: one of {SEVERITIES}")
        self.count = self.count or len(self.affected)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, check: str, message: str, fix: str = "",
            affected: Sequence[str] = (), count: int = 0) -> None:
        self.findings.append(Finding(severity, check, message, fix, [str(a) for a in affected][:20],
                                     count or len(affected)))

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fatal"]

    def checks(self, severity: str | None = None) -> set[str]:
        return {f.check for f in self.findings if severity is None or f.severity == severity}

    def to_frame(self) -> pd.DataFrame:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        rows = sorted((asdict(f) for f in self.findings), key=lambda r: order[r["severity"]])
        df = pd.DataFrame(rows, columns=["severity", "check", "message", "fix", "affected", "count"])
        df["affected"] = df["affected"].map(lambda a: ", ".join(a[:5]) + (" …" if len(a) > 5 else ""))
        return df

    def raise_if_fatal(self, what: str) -> None:
        """Raises :class:`DataValidationError` listing every fatal finding and its fix."""
        if self.fatal:
            lines = [f"- {f.check}: {f.message} (affected: {', '.join(f.affected[:5]) or f.count}) "
                     f"— fix: {f.fix}" for f in self.fatal]
            raise DataValidationError(f"{what} has {len(self.fatal)} fatal data finding(s):\n" + "\n".join(lines))


# physical ranges: (column, low, high, unit); outside -> warn, impossible -> fatal
RANGES = {"pl_rade": (0.1, 30.0, "R_earth"), "pl_bmasse": (0.01, 30000.0, "M_earth"),
          "st_teff": (2000.0, 60000.0, "K"), "st_rad": (0.01, 200.0, "R_sun"),
          "pl_insol": (1e-5, 1e6, "S_earth"), "pl_orbsmax": (1e-4, 1e5, "AU")}
IMPOSSIBLE_BELOW_ZERO = ("pl_rade", "pl_bmasse", "st_teff", "st_rad", "pl_insol", "pl_orbsmax", "pl_orbper")


def validate_catalog(catalog: pd.DataFrame, required: Sequence[str] = ("pl_name", "hostname", "pl_rade",
                                                                         "pl_bmasse", "st_teff", "st_rad")) -> Report:
    """Returns the findings on a cleaned catalog table."""
    rep = Report()
    missing = [c for c in required if c not in catalog.columns]
    if missing:
        rep.add("fatal", "schema", f"columns {missing} missing", "export the full PSCompPars table")
        return rep
    names = catalog["pl_name"].astype(str)
    dup = names[names.duplicated(keep=False)]
    if len(dup):
        rep.add("fatal", "duplicates", f"{dup.nunique()} planet names appear more than once",
                "keep one row per planet (PSCompPars has one by construction)", sorted(set(dup)))
    if catalog["hostname"].isna().any():
        rep.add("fatal", "schema", "planets without a host name", "fill hostname: splits are by host",
                names[catalog["hostname"].isna()].tolist())
    numeric = catalog.select_dtypes(include="number")
    inf_cols = [c for c in numeric.columns if np.isinf(numeric[c].to_numpy(float)).any()]
    for c in inf_cols:
        rows = names[np.isinf(catalog[c].to_numpy(float))].tolist()
        rep.add("fatal", "nan_inf", f"{c} holds infinite values", "replace with NaN (missing) or the true value", rows)
    for c in IMPOSSIBLE_BELOW_ZERO:
        if c in catalog:
            bad = catalog[c].to_numpy(float) <= 0
            if bad.any():
                rep.add("fatal", "physical_range", f"{c} <= 0 is physically impossible",
                        "correct or drop these rows in the catalog", names[bad].tolist())
    for c, (lo, hi, unit) in RANGES.items():
        if c in catalog:
            v = catalog[c].to_numpy(float)
            out = (v > 0) & ((v < lo) | (v > hi))
            if out.any():
                rep.add("warn", "physical_range", f"{c} outside {lo}-{hi} {unit}", "check these rows",
                        names[out].tolist())
    bounds = [c for c in catalog.columns if c.endswith("_bound")]
    n_lim = int(sum(catalog[c].notna().sum() for c in bounds))
    if n_lim:
        rep.add("info", "limit_flags", f"{n_lim} values are upper/lower limits, kept aside as *_bound and "
                "not used as measurements", "", count=n_lim)
    if "pl_insol_derived" in catalog:
        rep.add("info", "derived", f"insolation derived from L and a for {int(catalog['pl_insol_derived'].sum())} planets",
                "", count=int(catalog["pl_insol_derived"].sum()))
    return rep


def validate_labels(labels: pd.DataFrame, max_undetermined: float = 0.5) -> Report:
    """Returns findings on the habitable-zone labels of the whole catalog: fatal when most planets
    are undetermined (e.g. no insolation and no way to derive it) or when no decidable planet is
    habitable (the head would learn a constant)."""
    rep = Report()
    n = len(labels)
    if n == 0 or "habitable" not in labels:
        rep.add("fatal", "labels", "no labels were computed", "check the catalog columns")
        return rep
    hz = labels["hz_optimistic"] if "hz_optimistic" in labels else labels["habitable"]
    undetermined = int(hz.isna().sum())
    positives = int((labels["habitable"] == True).sum())  # noqa: E712
    decidable = int(labels["habitable"].notna().sum())
    if undetermined > max_undetermined * n:
        rep.add("fatal", "labels", f"the habitable zone is undetermined for {undetermined} of {n} planets "
                f"({100 * undetermined / n:.0f}%)", "the catalog lacks insolation (pl_insol) or the stellar radius, "
                "temperature and semi-major axis to derive it: export those columns", count=undetermined)
    elif undetermined:
        rep.add("info", "labels", f"habitable zone undetermined for {undetermined} of {n} planets", "",
                count=undetermined)
    if positives == 0:
        rep.add("fatal", "labels", f"no habitable planet among the {decidable} decidable ones: the "
                "label's head would learn a constant", "use a catalog that contains rocky planets in the "
                "habitable zone (the full PSCompPars table has ~25)")
    return rep


def validate_dataset(data_dir: str | Path) -> Report:
    """Returns the findings on a built dataset folder (manifest, shards, graphs, labels)."""
    data_dir = Path(data_dir)
    rep = Report()
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        rep.add("fatal", "missing_file", f"{manifest_path} not found",
                "build the dataset first (notebook 01_data_validation / build_dataset)", [str(manifest_path)])
        return rep
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        rep.add("fatal", "missing_file", f"{manifest_path} is not valid JSON ({exc})", "rebuild the dataset",
                [str(manifest_path)])
        return rep
    for f in manifest.get("catalog_findings", []):
        rep.findings.append(Finding(**f))
    if manifest.get("synthetic"):
        rep.add("warn", "synthetic", "the catalog is SYNTHETIC: no result on it says anything about real planets",
                "provide a real catalog (catalog_path or the archive)")
    files = [*manifest["shards"], manifest["graphs"]]
    for entry in files:
        path = data_dir / entry["file"]
        if not path.is_file():
            rep.add("fatal", "missing_file", f"{entry['file']} listed in the manifest is missing",
                    "rebuild the dataset (the build reuses what is intact)", [entry["file"]])
        elif sha256_file(path) != entry["sha256"]:
            rep.add("fatal", "checksum", f"{entry['file']} does not match its sha256 (corrupt or edited)",
                    "rebuild the dataset", [entry["file"]])
    if rep.fatal:
        return rep

    records = pd.DataFrame(manifest["records"])
    dup = records["pl_name"][records["pl_name"].duplicated(keep=False)]
    if len(dup):
        rep.add("fatal", "duplicates", f"{dup.nunique()} planets appear more than once in the dataset",
                "deduplicate the catalog and rebuild", sorted(set(dup)))
    leaked = records.groupby("hostname")["split"].nunique()
    leaked = leaked[leaked > 1].index.tolist()
    if leaked:
        rep.add("fatal", "split_leakage", f"{len(leaked)} host systems have planets in two splits",
                "split by host (astrobio_lib.data.loader.split_by_host) and rebuild", leaked)

    graphs = torch.load(data_dir / manifest["graphs"]["file"], weights_only=True)
    for variant in manifest["graphs"]["nodes"]:
        x, ei = graphs[f"{variant}_x"], graphs[f"{variant}_edge_index"]
        dangling = int(((ei < 0) | (ei >= x.shape[0])).any(dim=0).sum())
        if dangling:
            rep.add("fatal", "graph_sanity", f"graph {variant}: {dangling} edges point to missing nodes",
                    "rebuild the graphs (metabolism.to_graph)", [variant], count=dangling)
        if not torch.isfinite(x).all():
            rep.add("fatal", "nan_inf", f"graph {variant}: non-finite node features", "rebuild", [variant])

    names = records["pl_name"].to_numpy()
    n_climate = n_spectrum = 0
    for entry in manifest["shards"]:
        shard = torch.load(data_dir / entry["file"], weights_only=True)
        rec = shard["record"].numpy()

        def who(mask, rec=rec):
            return names[rec[np.asarray(mask)]].tolist()
        feats, fmask = shard["catalog"], shard["catalog_mask"]
        bad = (~torch.isfinite(feats) & fmask).any(dim=1) | (torch.isinf(feats)).any(dim=1)
        if bad.any():
            rep.add("fatal", "nan_inf", f"{entry['file']}: NaN/Inf in catalog features marked present",
                    "mask missing values instead of storing NaN; rebuild", who(bad))
        cubes = shard["climate"]
        if cubes.numel() and tuple(cubes.shape[1:]) != CUBE_SHAPE:
            rep.add("fatal", "datacube_shape", f"{entry['file']}: datacubes shaped {tuple(cubes.shape[1:])}, "
                    f"expected {CUBE_SHAPE} [variable, level, lat, lon]", "rebuild the climate modality",
                    who(shard["climate_index"] >= 0))
        elif cubes.numel():
            n_climate += cubes.shape[0]
            finite = torch.isfinite(cubes).flatten(1).all(dim=1)
            if not finite.all():
                idx = shard["climate_index"]
                rep.add("fatal", "nan_inf", f"{entry['file']}: NaN/Inf in datacubes", "rebuild the climate modality",
                        who(torch.isin(idx, (~finite).nonzero().flatten())))
            t, q = cubes[:, 0], cubes[:, 1]
            if finite.all() and (t.min() < 100 or t.max() > 700 or q.min() < 0 or q.max() > 0.5):
                rep.add("warn", "datacube_sanity", f"{entry['file']}: temperature {t.min():.0f}-{t.max():.0f} K or "
                        f"humidity {q.min():.3g}-{q.max():.3g} kg/kg outside plausible ranges", "inspect the cubes")
        if int(shard["climate_index"].max()) >= cubes.shape[0]:
            rep.add("fatal", "datacube_shape", f"{entry['file']}: climate index points past the stored cubes",
                    "rebuild", who(shard["climate_index"] >= cubes.shape[0]))
        spec, has = shard["spectrum"], shard["has_spectrum"]
        n_spectrum += int(has.sum())
        bad = has & ~torch.isfinite(spec).all(dim=1)
        if bad.any():
            rep.add("fatal", "nan_inf", f"{entry['file']}: non-finite spectrum values", "rebuild the spectra", who(bad))
        bad_ids = (shard["graph_id"] < 0) | (shard["graph_id"] >= len(manifest["graphs"]["nodes"]))
        if bad_ids.any():
            rep.add("fatal", "graph_sanity", f"{entry['file']}: graph ids without a graph", "rebuild", who(bad_ids))
        p = shard["p_habitable"]
        bad = torch.isinf(p) | (p < 0) | (p > 1)
        if bad.any():
            rep.add("fatal", "labels", f"{entry['file']}: P(habitable) outside [0, 1]", "rebuild the labels", who(bad))

    n = len(records)
    prev = manifest.get("prevalence", {})
    rep.add("info", "prevalence", f"habitable: {prev.get('subset_habitable_%')}% of this dataset's decidable planets "
            f"vs {prev.get('catalog_habitable_%')}% of the catalog"
            + (" (enriched subset)" if prev.get("subset_enriched") else ""), "", count=n)
    if prev.get("catalog_habitable_%", 100) < 1:
        rep.add("warn", "class_balance", "positives are under 1% of the catalog: plain accuracy is meaningless; "
                "report AUPRC, Brier and calibration against baselines", "")
    for name, k in (("climate", n_climate), ("spectrum", n_spectrum)):
        sev = "warn" if k < 0.05 * n else "info"
        rep.add(sev, "coverage", f"{name}: {k} of {n} planets ({100 * k / max(n, 1):.1f}%)",
                "climate cubes exist only inside CLERO's domain" if name == "climate" else "", count=k)
    labels = data_dir / "labels.csv"
    if not labels.is_file():
        rep.add("fatal", "missing_file", "labels.csv missing", "rebuild the dataset", ["labels.csv"])
    return rep


def findings_as_dicts(report: Report) -> list[dict[str, Any]]:
    return [asdict(f) for f in report.findings]
