import time

import numpy as np

from astrobio_lib.data import catalog, metabolism, spectra, text
from astrobio_lib.data.atmosphere import draw_atmospheres, equilibrium_temperature_k
from astrobio_lib.data.sources import SOURCES, status_table


def test_registry_covers_the_seeds_and_never_hangs():
    t0 = time.perf_counter()
    rows = status_table()
    assert time.perf_counter() - t0 < 60
    assert len(rows) >= 13
    assert {r["status"] for r in rows} <= {"ok", "offline", "missing-credentials", "not-implemented", "missing-package"}
    status = {r["source"]: r["status"] for r in rows}
    assert status["clero"] == "ok" and status["cobra_models"] == "ok"
    assert status["mast_jwst"] == "not-implemented"
    for name in ("mast_jwst", "kegg"):
        try:
            SOURCES[name].fetch("/tmp")
        except NotImplementedError as exc:
            assert name in str(exc)
        else:  # pragma: no cover
            raise AssertionError("an unimplemented source pretended to fetch")


def test_auto_falls_back_to_a_labelled_synthetic_population(monkeypatch, tmp_path):
    """Only with nothing configured, the archive offline and no shipped snapshot."""
    monkeypatch.delenv(catalog.ENV_CATALOG, raising=False)
    monkeypatch.setattr(catalog, "fetch_archive", lambda *a, **k: (_ for _ in ()).throw(catalog.CatalogError("offline")))
    monkeypatch.setattr(catalog, "SNAPSHOT_PATH", tmp_path / "not_installed.csv.gz")
    df, prov = catalog.load_catalog("auto", None, cache_dir=tmp_path)
    assert prov.synthetic and prov.source == "synthetic" and "SYNTHETIC" in prov.banner()
    assert "tried" in prov.note
    assert df["pl_name"].str.startswith("SYN-").all()
    # the generator's documented relations hold
    rocky = df["pl_rade"] < 1.2
    assert df.loc[rocky, "pl_bmasse"].median() < df.loc[~rocky, "pl_bmasse"].median()
    assert df["pl_insol"].notna().mean() > 0.95


def test_atmospheres_follow_their_priors():
    p = np.r_[np.zeros(500), np.ones(500)]
    atm = draw_atmospheres(p, np.full(1000, 288.0), seed=0)
    assert atm["biosphere"][:500].sum() == 0  # no life where P(habitable) = 0
    assert 0.35 < atm["biosphere"][500:].mean() < 0.65  # 0.5 * P(habitable)
    assert ((atm["P0"] >= 0.5) & (atm["P0"] <= 5)).all()
    assert (atm["biosignature"] == ((atm["O2"] >= 0.01) & (atm["CH4"] >= 1e-4))).all()
    assert abs(equilibrium_temperature_k(1.0) - 255.0) < 1e-9


def test_spectrum_shows_the_gases_of_its_atmosphere():
    import pandas as pd

    planet = pd.DataFrame({"pl_rade": [1.0, 1.0], "st_rad": [0.2, 0.2], "pl_bmasse": [1.0, 1.0],
                           "t_eq_k": [280.0, 280.0], "sy_kmag": [8.0, 8.0]})
    base = dict(P0=[1.0, 1.0], CO2=[1e-4, 1e-4], CH4=[1e-7, 1e-7], O2=[0.0, 0.0], O3=[0.0, 0.0], H2O=[1e-5, 1e-5])
    atm = pd.DataFrame(base)
    atm.loc[1, "CO2"] = 0.1
    wl = spectra.wavelength_grid_um(256)
    depth = spectra.transit_depth(planet, atm, wl)
    band = np.argmin(abs(wl - 4.3))
    assert depth[1, band] > depth[0, band]  # more CO2, deeper 4.3 um band
    assert spectra.noise_ppm(planet).min() >= 20 / 2


def test_metabolic_graph_variants_and_text_roundtrip():
    model = metabolism.load_model("textbook")
    aerobic, anoxic = metabolism.to_graph(model, "aerobic"), metabolism.to_graph(model, "anoxic")
    assert aerobic.num_nodes == 72 and aerobic.x.shape[1] == metabolism.N_FEATURES
    assert anoxic.edge_index.shape[1] < aerobic.edge_index.shape[1]
    assert int(aerobic.edge_index.max()) < aerobic.num_nodes
    ids, mask = text.encode("Proxima Cen b ☉", 32)
    assert text.decode(ids) == "Proxima Cen b ☉" and mask.sum() == len("Proxima Cen b ☉".encode()) + 2
    ids, _ = text.encode("x" * 100, 16)
    assert ids[-1] == text.EOS and len(ids) == 16
