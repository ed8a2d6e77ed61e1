import json
import urllib.error

import numpy as np
import pandas as pd
import pytest

from astrobio_lib.config import DataConfig
from astrobio_lib.data import catalog
from astrobio_lib.data.build import LABEL_COLUMNS, write_labels

SNAPSHOT_SHA256 = "187d1b1027ef9d24a75f176590395067ef07eaf1c5711a9aab66eea46cf197d1"


def test_real_snapshot_loads_and_cleans(real_catalog):
    df, prov = catalog.load_catalog("file", str(real_catalog))
    snap, snap_prov = catalog.load_catalog("snapshot")
    assert snap_prov.source == "snapshot" and snap_prov.sha256 == SNAPSHOT_SHA256 and len(snap) == 6061
    assert "2025-12-15" in snap_prov.banner() and not snap_prov.synthetic
    assert len(df) == 6061 and prov.rows == 6061
    assert prov.sha256 == SNAPSHOT_SHA256 and prov.source == "file" and not prov.synthetic
    assert "real data" in prov.banner()
    # limit-flagged masses (pl_bmasselim = +1: 214 upper limits) are bounds, not measurements
    assert df["pl_bmasse_bound"].notna().sum() == 214 + 13
    assert df.loc[df["pl_bmasse_bound"].notna(), "pl_bmasse"].isna().all()
    # 4255 archive insolations; the rest derived from L and a where both exist
    assert (~df["pl_insol_derived"] & df["pl_insol"].notna()).sum() == 4255
    assert df["pl_insol_derived"].sum() > 1000
    earthlike = df.set_index("pl_name").loc["Kepler-442 b"]
    assert earthlike["st_lum"] == pytest.approx(0.598**2 * (4402 / 5772) ** 4, rel=1e-9)


def test_labels_for_every_planet(real_catalog, tmp_path):
    df, prov = catalog.load_catalog("file", str(real_catalog))
    labels = write_labels(df, prov, DataConfig(label_mc_samples=32), seed=0, out_dir=tmp_path)
    written = pd.read_csv(tmp_path / "labels.csv")
    assert len(written) == 6061 and list(written.columns) == LABEL_COLUMNS
    assert written.groupby("hostname")["split"].nunique().max() == 1
    named = labels.set_index("pl_name")
    assert named.loc["Proxima Cen b", "habitable"] is True or named.loc["Proxima Cen b", "habitable"] == True  # noqa: E712
    assert pd.isna(named.loc["TRAPPIST-1 e", "hz_optimistic"])  # T_eff 2566 K: outside the fit
    assert 40 <= int((labels["habitable_phl"] == True).sum()) <= 90  # noqa: E712  PHL lists ~60-70
    assert json.loads((tmp_path / "catalog_provenance.json").read_text())["sha256"] == SNAPSHOT_SHA256


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(catalog.CatalogError, match="none.csv .from catalog_path. does not exist: fix the path"):
        catalog.load_catalog("file", str(tmp_path / "none.csv"))
    with pytest.raises(catalog.CatalogError, match="not found: set catalog_path"):
        catalog.read_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("# header\npl_name,hostname\nx,y\n")
    with pytest.raises(catalog.CatalogError, match="lacks columns"):
        catalog.read_csv(bad)


def test_offline_archive_is_a_clear_error(monkeypatch, tmp_path):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(catalog.urllib.request, "urlopen", offline)
    monkeypatch.delenv(catalog.ENV_CATALOG, raising=False)
    with pytest.raises(catalog.CatalogError, match="unreachable.*offline is normal"):
        catalog.load_catalog("archive", cache_dir=tmp_path)
    _, prov = catalog.load_catalog("auto", cache_dir=tmp_path)  # auto ends on the shipped real snapshot
    assert prov.source == "snapshot" and not prov.synthetic and prov.sha256 == SNAPSHOT_SHA256
    assert not list(tmp_path.rglob("*.part")), "a failed download leaves no partial file"
    # synthetic only when nothing is configured and the snapshot is missing from the installation
    monkeypatch.setattr(catalog, "SNAPSHOT_PATH", tmp_path / "not_installed.csv.gz")
    _, prov = catalog.load_catalog("auto", cache_dir=tmp_path)
    assert prov.synthetic and "archive (offline)" in prov.note and "snapshot" in prov.note


def test_configured_catalog_that_does_not_exist_is_an_error_not_synthetic(monkeypatch, tmp_path):
    """Fault finding: a catalog_path that does not exist trained on the SYNTHETIC catalog."""
    monkeypatch.delenv(catalog.ENV_CATALOG, raising=False)
    with pytest.raises(catalog.CatalogError, match=r"absent.csv \(from catalog_path\) does not exist"):
        catalog.load_catalog("auto", str(tmp_path / "absent.csv"), cache_dir=tmp_path)
    monkeypatch.setenv(catalog.ENV_CATALOG, str(tmp_path / "env_absent.csv"))
    with pytest.raises(catalog.CatalogError, match=r"env_absent.csv \(from env ASTROBIO_CATALOG\) does not exist"):
        catalog.load_catalog("auto", cache_dir=tmp_path)


def test_header_only_and_text_in_numeric_columns_are_named(tmp_path, real_catalog):
    """Fault findings: a header-only catalog and text in a numeric column gave raw tracebacks."""
    raw = pd.read_csv(real_catalog, comment="#", low_memory=False)
    header_only = tmp_path / "header.csv"
    raw.head(0).to_csv(header_only, index=False)
    with pytest.raises(catalog.CatalogError, match="has a header but no planet rows"):
        catalog.load_catalog("file", str(header_only))
    texty = raw.head(50).copy()
    texty["pl_rade"] = texty["pl_rade"].astype(object)
    texty.loc[3, "pl_rade"] = "about two"
    path = tmp_path / "texty.csv"
    texty.to_csv(path, index=False)
    with pytest.raises(catalog.CatalogError, match=r"column pl_rade must be numeric but 1 value\(s\) are not "
                                                   r"\(row 3: .* = 'about two'\)"):
        catalog.load_catalog("file", str(path))


def test_labels_undetermined_for_most_planets_fail_the_data_verdict(real_catalog):
    """Fault finding: a catalog with every insolation NaN passed with 0 positives."""
    from astrobio_lib.data.habitable_zone import label_table
    from astrobio_lib.data.validate import validate_labels

    df, _ = catalog.load_catalog("file", str(real_catalog))
    for col in ("pl_insol", "st_rad", "pl_orbsmax"):
        df[col] = np.nan
    rep = validate_labels(label_table(df, n_samples=8, seed=0))
    messages = " ".join(f.message for f in rep.fatal)
    assert "habitable zone is undetermined for 6061 of 6061 planets" in messages and "no habitable planet" in messages


def test_archive_download_is_cached_with_checksum(monkeypatch, tmp_path, real_catalog):
    calls = []

    import gzip

    class Response:  # the archive serves the CSV the snapshot was exported as
        def __init__(self):
            self.fh = gzip.open(real_catalog, "rb")

        def read(self, n):
            return self.fh.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_urlopen(url, timeout):
        calls.append(url)
        return Response()

    monkeypatch.setattr(catalog.urllib.request, "urlopen", fake_urlopen)
    df, prov = catalog.load_catalog("archive", cache_dir=tmp_path)
    assert prov.source == "archive" and prov.sha256 == SNAPSHOT_SHA256 and len(df) == 6061
    assert "pscomppars" in calls[0]
    catalog.load_catalog("archive", cache_dir=tmp_path)
    assert len(calls) == 1, "a verified cached download is reused"


def test_clean_handles_lower_limits():
    raw = pd.DataFrame({c: [np.nan] for c in catalog.REQUIRED_COLUMNS})
    raw["pl_name"], raw["hostname"], raw["pl_rade"], raw["pl_radelim"] = ["p"], ["h"], [2.0], [-1]
    out = catalog.clean(raw)
    assert np.isnan(out.loc[0, "pl_rade"]) and out.loc[0, "pl_rade_bound"] == 2.0
