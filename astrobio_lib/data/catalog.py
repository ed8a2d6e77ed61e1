"""The planet/star table: NASA Exoplanet Archive, Planetary Systems Composite Parameters.

Sources (``catalog_source``):
- ``file``: a local PSCompPars CSV (``catalog_path``, or env ``ASTROBIO_CATALOG``); its ``#``
  header lines are skipped.
- ``archive``: the archive's TAP service (table ``pscomppars``), cached with its sha256.
- ``snapshot``: the PSCompPars snapshot of 2025-12-15 (6,061 planets) shipped inside the package
  (``astrobio_lib/data/snapshot/``, gzip) — the embedded default, so a fresh clone runs offline on
  real planets.
- ``synthetic``: a SYNTHETIC population from :func:`synthetic_population` (documented priors from
  published occurrence rates); labelled synthetic in the provenance and every report.
- ``auto``: a configured file (``catalog_path`` or ``ASTROBIO_CATALOG``) — which must then exist —
  else the archive, else the shipped snapshot; the SYNTHETIC population only when nothing was
  configured and the snapshot is missing from the installation. Whichever is used is recorded in
  the provenance.

Cleaning (:func:`clean`): values carrying a limit flag (``*lim`` = +1 upper or -1 lower limit)
are not measurements: they move to ``<col>_bound`` and the value becomes NaN. Asymmetric errors
(``err1`` >= 0 upper, ``err2`` <= 0 lower) are kept. Stellar luminosity ``st_lum`` (L_sun) is
derived from ``st_rad`` and ``st_teff``; ``pl_insol`` is derived from L and ``pl_orbsmax`` where
the archive gives none, and ``pl_insol_derived`` says which rows.

Acknowledgement asked by the archive: "This research has made use of the NASA Exoplanet Archive,
which is operated by the California Institute of Technology, under contract with the National
Aeronautics and Space Administration under the Exoplanet Exploration Program."
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from astrobio_lib import fsutil
from astrobio_lib.data.habitable_zone import stellar_luminosity_sun
from astrobio_lib.report import PROVENANCE_FILE

log = logging.getLogger(__name__)

TAP_URL = "https://exoplanetarchive.ipac.caltech.edu/TAP/sync"
TAP_QUERY = "select * from pscomppars"
ENV_CATALOG = "ASTROBIO_CATALOG"
ACKNOWLEDGEMENT = (
    "This research has made use of the NASA Exoplanet Archive, which is operated by the "
    "California Institute of Technology, under contract with the National Aeronautics and "
    "Space Administration under the Exoplanet Exploration Program.")

REQUIRED_COLUMNS = ("pl_name", "hostname", "pl_rade", "pl_bmasse", "pl_insol", "pl_orbsmax",
                    "st_teff", "st_rad")
# (value column, has err1/err2 columns, limit-flag column)
MEASURED = ("pl_orbper", "pl_orbsmax", "pl_rade", "pl_bmasse", "pl_orbeccen", "pl_insol",
            "pl_eqt", "st_teff", "st_rad", "st_mass", "st_met", "st_logg")


SNAPSHOT_DATE = "2025-12-15"
SNAPSHOT_PATH = Path(__file__).resolve().parent / "snapshot" / f"pscomppars_{SNAPSHOT_DATE}.csv.gz"
SOURCES = ("auto", "file", "archive", "snapshot", "synthetic")


class CatalogError(RuntimeError):
    """The catalog could not be read or fetched; the message says what to do."""


@dataclass(frozen=True)
class Provenance:
    """Where a catalog came from; written into manifests and shown atop every report."""

    source: str  # file | archive | synthetic
    location: str
    sha256: str
    rows: int
    synthetic: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, data_dir: str | Path) -> Path:
        """Records this provenance in a run's data folder (the banner atop every report reads it)."""
        path = Path(data_dir) / PROVENANCE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, json.dumps(self.to_dict(), indent=2))
        return path

    def banner(self) -> str:
        tag = "SYNTHETIC DATA — not real planets" if self.synthetic else "real data"
        return (f"catalog: {self.source} ({tag}) · {self.rows} planets · {self.location} · "
                f"sha256 {self.sha256[:12]}…")


def sha256_file(path: str | Path) -> str:
    """Returns the hex sha256 of a catalog file — of its decompressed content for ``.gz`` (so the
    shipped snapshot has the sha256 of the CSV the archive exported)."""
    return fsutil.sha256_file(path, gunzip=str(path).endswith(".gz"))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Returns the raw PSCompPars table from a CSV (``#`` comment lines skipped).

    Raises:
        CatalogError: missing file, unreadable CSV, or required columns absent.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalog file {path} not found: set catalog_path (or env {ENV_CATALOG}) "
                           f"to a PSCompPars CSV, or use catalog_source: archive when online")
    try:
        raw = pd.read_csv(path, comment="#", low_memory=False)
    except Exception as exc:
        raise CatalogError(f"catalog file {path} is not a readable CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise CatalogError(f"catalog file {path} lacks columns {missing}: export the full "
                           f"PSCompPars table (select * from pscomppars)")
    if raw.empty:
        raise CatalogError(f"catalog file {path} has a header but no planet rows: export the "
                           f"PSCompPars table again (select * from pscomppars)")
    check_numeric(raw, str(path))
    return raw


def numeric_columns() -> list[str]:
    """Returns the catalog columns that must hold numbers (values, errors and limit flags)."""
    cols = []
    for col in MEASURED:
        cols += [col, f"{col}err1", f"{col}err2", f"{col}lim"]
    return cols


def check_numeric(raw: pd.DataFrame, where: str) -> None:
    """Refuses text in a numeric column, naming the column and the first offending rows.

    Raises:
        CatalogError: a numeric column holds values that are not numbers.
    """
    for col in numeric_columns():
        if col not in raw.columns or pd.api.types.is_numeric_dtype(raw[col]):
            continue
        parsed = pd.to_numeric(raw[col], errors="coerce")
        bad = raw[col].notna() & parsed.isna()
        if bad.any():
            rows = raw.loc[bad, [c for c in ("pl_name", col) if c in raw.columns]].head(3)
            examples = "; ".join(f"row {i}: {r.get('pl_name', '?')} = {r[col]!r}" for i, r in rows.iterrows())
            raise CatalogError(f"catalog {where}: column {col} must be numeric but {int(bad.sum())} value(s) "
                               f"are not ({examples}); fix or blank those cells")
        raw[col] = parsed


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Returns the cleaned catalog (see the module docstring for every rule)."""
    df = raw.copy()
    for col in MEASURED:
        if col not in df.columns:
            df[col] = np.nan
        for suffix in ("err1", "err2"):
            if f"{col}{suffix}" not in df.columns:
                df[f"{col}{suffix}"] = np.nan
        lim = df.get(f"{col}lim")
        df[f"{col}_bound"] = np.nan
        if lim is not None:
            is_limit = lim.fillna(0).ne(0)
            df.loc[is_limit, f"{col}_bound"] = df.loc[is_limit, col]
            df.loc[is_limit, [col, f"{col}err1", f"{col}err2"]] = np.nan
    df["st_lum"] = stellar_luminosity_sun(df["st_rad"], df["st_teff"])
    derived = df["pl_insol"].isna() & df["st_lum"].notna() & df["pl_orbsmax"].notna()
    df["pl_insol_derived"] = derived
    s = df["st_lum"] / df["pl_orbsmax"] ** 2
    # Symmetric first-order propagation of S = R^2 T^4 / a^2 (mean of the asymmetric errors).
    rel = np.sqrt(
        (2 * _mean_abs_err(df, "st_rad") / df["st_rad"]) ** 2
        + (4 * _mean_abs_err(df, "st_teff") / df["st_teff"]) ** 2
        + (2 * _mean_abs_err(df, "pl_orbsmax") / df["pl_orbsmax"]) ** 2)
    df.loc[derived, "pl_insol"] = s[derived]
    df.loc[derived, "pl_insolerr1"] = (s * rel)[derived]
    df.loc[derived, "pl_insolerr2"] = -(s * rel)[derived]
    return df


def _mean_abs_err(df: pd.DataFrame, col: str) -> pd.Series:
    return (df[f"{col}err1"].abs().fillna(0) + df[f"{col}err2"].abs().fillna(0)) / 2


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Returns a per-column summary of the key catalog quantities: non-null count, limit-flagged
    count, median and range, with units."""
    units = {"pl_rade": "R_earth", "pl_bmasse": "M_earth", "pl_insol": "S_earth",
             "pl_orbsmax": "AU", "pl_orbper": "days", "pl_eqt": "K", "st_teff": "K",
             "st_rad": "R_sun", "st_mass": "M_sun", "st_lum": "L_sun"}
    rows = []
    for col, unit in units.items():
        x = df[col]
        bound = df.get(f"{col}_bound")
        rows.append({"column": col, "unit": unit, "non_null": int(x.notna().sum()),
                     "limit_flagged": int(bound.notna().sum()) if bound is not None else 0,
                     "median": x.median(), "min": x.min(), "max": x.max()})
    return pd.DataFrame(rows).set_index("column")


def fetch_archive(dest_dir: str | Path, timeout_s: float = 60.0) -> Path:
    """Downloads PSCompPars from the archive's TAP service into ``dest_dir`` and returns the
    CSV path; an existing download is reused (its sha256 is recorded beside it).

    Raises:
        CatalogError: the archive cannot be reached (offline is normal: use a local file).
    """
    dest_dir = Path(dest_dir)
    dest = dest_dir / "pscomppars_archive.csv"
    if dest.is_file() and (dest_dir / "pscomppars_archive.csv.sha256").is_file():
        if (dest_dir / "pscomppars_archive.csv.sha256").read_text().split()[0] == sha256_file(dest):
            return dest
    url = f"{TAP_URL}?{urllib.parse.urlencode({'query': TAP_QUERY, 'format': 'csv'})}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as fh:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"NASA Exoplanet Archive unreachable ({exc}): offline is normal — "
                           f"set catalog_path to a local PSCompPars CSV") from exc
    os.replace(tmp, dest)
    (dest_dir / "pscomppars_archive.csv.sha256").write_text(f"{sha256_file(dest)}  {dest.name}\n")
    return dest


def resolve_catalog_path(catalog_path: Optional[str]) -> Optional[Path]:
    """Returns ``catalog_path``, else env ``ASTROBIO_CATALOG``, else None."""
    value = catalog_path or os.environ.get(ENV_CATALOG)
    return Path(value) if value else None


def load_snapshot() -> tuple[pd.DataFrame, Provenance]:
    """Returns the shipped PSCompPars snapshot, cleaned, with its provenance.

    Raises:
        CatalogError: the snapshot file is missing from this installation.
    """
    if not SNAPSHOT_PATH.is_file():
        raise CatalogError(f"the shipped catalog snapshot {SNAPSHOT_PATH} is missing from this installation: "
                           f"reinstall astrobio (pip install -e .) or set catalog_path to a PSCompPars CSV")
    raw = read_csv(SNAPSHOT_PATH)
    return clean(raw), Provenance("snapshot", f"{SNAPSHOT_PATH.name} (shipped with astrobio, archive export of "
                                  f"{SNAPSHOT_DATE})", sha256_file(SNAPSHOT_PATH), len(raw), False,
                                  note=f"NASA Exoplanet Archive PSCompPars snapshot of {SNAPSHOT_DATE}")


def load_catalog(source: str = "auto", catalog_path: Optional[str] = None,
                 cache_dir: Optional[str | Path] = None,
                 timeout_s: float = 10.0) -> tuple[pd.DataFrame, Provenance]:
    """Returns (cleaned catalog, provenance) from the requested source.

    Synthetic planets are used only when asked for, or in ``auto`` when nothing was configured
    and the shipped snapshot is missing: a configured file that does not exist is an error, never
    a reason to train on fake planets.

    Raises:
        CatalogError: the requested source is not available (a configured file is missing or
            malformed; the archive is unreachable for ``archive``; the snapshot is missing).
        ValueError: unknown ``source``.
    """
    if source not in SOURCES:
        raise ValueError(f"catalog_source={source!r}: must be one of {', '.join(SOURCES)}")
    tried: list[str] = []
    if source in ("file", "auto"):
        path = resolve_catalog_path(catalog_path)
        if path is not None:
            if not path.is_file():
                origin = "catalog_path" if catalog_path else f"env {ENV_CATALOG}"
                raise CatalogError(f"catalog file {path} (from {origin}) does not exist: fix the path, or remove it "
                                   f"to use the shipped {SNAPSHOT_DATE} snapshot (catalog_source: snapshot)")
            raw = read_csv(path)
            return clean(raw), Provenance("file", str(path), sha256_file(path), len(raw), False)
        if source == "file":
            raise CatalogError(f"catalog_source: file but neither catalog_path nor env {ENV_CATALOG} is set: "
                               f"set one, or use catalog_source: snapshot / auto")
        tried.append(f"file (no catalog_path / {ENV_CATALOG})")
    if source in ("archive", "auto"):
        try:
            dest = fetch_archive(Path(cache_dir or ".") / "archive_cache", timeout_s=timeout_s)
            raw = read_csv(dest)
            return clean(raw), Provenance("archive", TAP_URL, sha256_file(dest), len(raw), False,
                                          note=f"query: {TAP_QUERY}")
        except CatalogError as exc:
            if source == "archive":
                raise
            log.info("catalog: archive unavailable (%s): using the shipped %s snapshot", exc, SNAPSHOT_DATE)
            tried.append("archive (offline)")
    if source in ("snapshot", "auto"):
        if source == "snapshot" or SNAPSHOT_PATH.is_file():
            return load_snapshot()
        tried.append("shipped snapshot (missing from this installation)")
    # synthetic (explicitly, or as the last resort of auto with nothing configured)
    if tried:
        log.warning("catalog: no real catalog available (tried %s): using the SYNTHETIC population",
                    ", ".join(tried))
    raw = synthetic_population(n_planets=SYNTHETIC_PLANETS, seed=0)
    digest = hashlib.sha256(pd.util.hash_pandas_object(raw, index=False).values.tobytes()).hexdigest()
    note = ("no real catalog available: tried " + ", ".join(tried)) if tried else "requested explicitly"
    return clean(raw), Provenance("synthetic", "astrobio_lib.data.catalog.synthetic_population(seed=0)",
                                  digest, len(raw), True, note=note)


SYNTHETIC_PLANETS = 3000


def synthetic_population(n_planets: int = SYNTHETIC_PLANETS, seed: int = 0) -> pd.DataFrame:
    """Returns a SYNTHETIC planet population with the PSCompPars columns the pipeline uses.

    Priors (documented, not fitted):
    - Stars: spectral-type mix of transit-survey hosts (M 25%, K 30%, G 35%, F 10%), T_eff uniform
      within each type; main-sequence radius and mass from T_eff (R ~ M^0.8, L ~ M^4 scalings,
      Eker et al. 2015 order of magnitude), metallicity N(0, 0.2) dex.
    - Planets per host: 1-4 (sy_pnum). Periods log-uniform 0.5-400 d (Kepler occurrence is roughly
      flat in log P beyond ~10 d, Petigura et al. 2013). Radii from a two-peak log-normal mixture
      at 1.3 and 2.4 R_earth with the radius valley between them (Fulton et al. 2017), 20% giants
      log-uniform 4-15 R_earth. Masses from the Chen & Kipping 2017 mass-radius relation
      (R = M^0.279 below 2.04 M_earth, R ~ M^0.589 up to 132 M_earth) with 20% scatter.
    - Measurement errors: radius 6%, mass 20%, T_eff 100 K, stellar radius 5%, semi-major axis
      3%, asymmetric draws of the archive's err1 / err2 form; values are perturbed by them.

    With no detection bias, the habitable fraction (~5%) is far above the real catalog's (~0.4%).
    """
    rng = np.random.default_rng(seed)
    n_hosts = max(1, n_planets // 2)
    kind = rng.choice(4, size=n_hosts, p=[0.25, 0.30, 0.35, 0.10])
    teff_ranges = np.array([[2700, 3900], [3900, 5300], [5300, 6000], [6000, 7000]])
    teff = rng.uniform(teff_ranges[kind, 0], teff_ranges[kind, 1])
    st_mass = np.clip((teff / 5772.0) ** 1.8, 0.08, 2.0)
    st_rad = st_mass ** 0.8
    rows = []
    for h in range(n_hosts):
        for k in range(int(rng.integers(1, 5))):
            rows.append((h, k))
            if len(rows) >= n_planets:
                break
        if len(rows) >= n_planets:
            break
    host = np.array([r[0] for r in rows])
    n = len(host)
    period = 10 ** rng.uniform(np.log10(0.5), np.log10(400.0), n)
    a_au = (st_mass[host] * (period / 365.25) ** 2) ** (1 / 3)
    giant = rng.random(n) < 0.2
    small = np.where(rng.random(n) < 0.5, rng.lognormal(np.log(1.3), 0.15, n), rng.lognormal(np.log(2.4), 0.15, n))
    radius = np.where(giant, 10 ** rng.uniform(np.log10(4), np.log10(15), n), small)
    mass = np.where(radius < 2.04 ** 0.279, radius ** (1 / 0.279),
                    2.04 * (radius / 2.04 ** 0.279) ** (1 / 0.589))
    mass = mass * rng.lognormal(0.0, 0.2, n)

    def noisy(value, rel=None, absolute=None):
        sigma = value * rel if rel is not None else np.full(n, absolute, dtype=float)
        err1 = sigma * rng.uniform(0.8, 1.2, n)
        err2 = -sigma * rng.uniform(0.8, 1.2, n)
        return value + rng.normal(0, 1, n) * sigma, err1, err2

    r_obs, r1, r2 = noisy(radius, rel=0.06)
    m_obs, m1, m2 = noisy(mass, rel=0.20)
    t_obs, t1, t2 = noisy(teff[host], absolute=100.0)
    sr_obs, sr1, sr2 = noisy(st_rad[host], rel=0.05)
    a_obs, a1, a2 = noisy(a_au, rel=0.03)
    names = np.array([f"SYN-{h:05d}" for h in host])
    return pd.DataFrame({
        "pl_name": [f"{nm} {'bcde'[k]}" for nm, (_, k) in zip(names, rows, strict=True)],
        "hostname": names, "sy_pnum": pd.Series(host).map(pd.Series(host).value_counts()).to_numpy(),
        "discoverymethod": "Synthetic", "disc_year": np.nan,
        "pl_orbper": period, "pl_orbpererr1": period * 1e-4, "pl_orbpererr2": -period * 1e-4, "pl_orbperlim": 0,
        "pl_orbsmax": np.abs(a_obs), "pl_orbsmaxerr1": a1, "pl_orbsmaxerr2": a2, "pl_orbsmaxlim": 0,
        "pl_rade": np.abs(r_obs), "pl_radeerr1": r1, "pl_radeerr2": r2, "pl_radelim": 0,
        "pl_bmasse": np.abs(m_obs), "pl_bmasseerr1": m1, "pl_bmasseerr2": m2, "pl_bmasselim": 0,
        "pl_orbeccen": np.abs(rng.normal(0, 0.05, n)), "pl_insol": np.nan, "pl_eqt": np.nan,
        "st_teff": t_obs, "st_tefferr1": t1, "st_tefferr2": t2, "st_tefflim": 0,
        "st_rad": np.abs(sr_obs), "st_raderr1": sr1, "st_raderr2": sr2, "st_radlim": 0,
        "st_mass": st_mass[host], "st_met": rng.normal(0, 0.2, n), "st_logg": np.nan,
        "sy_dist": 10 ** rng.uniform(1, 3, n), "sy_kmag": rng.uniform(5, 14, n),
    })
