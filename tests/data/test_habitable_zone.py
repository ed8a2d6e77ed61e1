import numpy as np
import pandas as pd
import pytest

from astrobio_lib.data import habitable_zone as hab

TEFFS = (2600, 3300, 4500, 5780, 6500, 7200)
# Kopparapu et al. 2014, Table 1, evaluated independently (Decimal arithmetic) at TEFFS.
EXPECTED_S_EFF = {
    "recent_venus": (1.464535, 1.488080, 1.563713, 1.776000, 1.937119, 2.079656),
    "runaway_greenhouse_1me": (0.912899, 0.927517, 0.974630, 1.107000, 1.207475, 1.296364),
    "runaway_greenhouse_5me": (0.980201, 0.995560, 1.045757, 1.188000, 1.296118, 1.391755),
    "runaway_greenhouse_0.1me": (0.810887, 0.824868, 0.869210, 0.990000, 1.081097, 1.161784),
    "maximum_greenhouse": (0.222762, 0.241093, 0.285003, 0.356000, 0.399968, 0.435629),
    "early_mars": (0.200215, 0.216702, 0.256181, 0.320000, 0.359522, 0.391578),
}


@pytest.mark.parametrize("boundary", sorted(EXPECTED_S_EFF))
def test_kopparapu_2014_polynomial(boundary):
    np.testing.assert_allclose(hab.s_eff(boundary, np.array(TEFFS)), EXPECTED_S_EFF[boundary], atol=1e-4)


def test_solar_hz_distances():
    # d = 1/sqrt(S_eff_sun) AU for L = 1 L_sun (Kopparapu et al. 2014 for the Sun)
    expected = {"recent_venus": 0.7504, "runaway_greenhouse_1me": 0.9504,
                "maximum_greenhouse": 1.6760, "early_mars": 1.7678}
    for boundary, d in expected.items():
        assert hab.hz_distance_au(boundary, 5780.0, 1.0) == pytest.approx(d, abs=1e-4)


def test_outside_validity_is_undetermined_not_extrapolated():
    assert np.isnan(hab.s_eff("recent_venus", 2599.0))
    assert np.isnan(hab.s_eff("early_mars", 7201.0))
    assert np.isnan(hab.hz_optimistic(1.0, 2566.0))  # TRAPPIST-1
    assert np.isnan(hab.hz_conservative(np.nan, 5000.0))
    with pytest.raises(KeyError, match="unknown HZ boundary"):
        hab.s_eff("inner", 5780.0)


def test_zones_and_size_rules():
    assert hab.hz_conservative(1.0, 5780.0) == 1.0
    assert hab.hz_conservative(1.5, 5780.0) == 0.0  # inside recent Venus, outside runaway
    assert hab.hz_optimistic(1.5, 5780.0) == 1.0
    assert hab.rocky(1.6, np.nan) == 1.0 and hab.rocky(1.61, 1.0) == 0.0  # radius wins
    assert hab.rocky(np.nan, 1.9) == 1.0 and hab.rocky(np.nan, 2.1) == 0.0
    assert np.isnan(hab.rocky(np.nan, np.nan))
    assert hab.phl_size(2.4, np.nan) == 1.0 and hab.phl_size(np.nan, 9.0) == 1.0
    assert hab.phl_size(0.4, np.nan) == 0.0
    # a confident "no" wins over an undetermined part
    assert hab.habitable(1.0, 2400.0, 11.0, np.nan) == 0.0
    assert np.isnan(hab.habitable(1.0, 2400.0, 1.0, np.nan))


def test_esi_and_luminosity():
    assert hab.earth_similarity_index(1.0, 1.0) == pytest.approx(1.0)
    assert 0 < hab.earth_similarity_index(0.66, 1.34) < 1
    assert hab.stellar_luminosity_sun(1.0, 5772.0) == pytest.approx(1.0)


def _planet(**kw):
    row = dict(pl_name="p", hostname="h", pl_rade=1.0, pl_radeerr1=0.05, pl_radeerr2=-0.05,
               pl_bmasse=1.0, pl_bmasseerr1=np.nan, pl_bmasseerr2=np.nan, st_teff=5780.0,
               st_tefferr1=50.0, st_tefferr2=-50.0, pl_insol=1.0, pl_insolerr1=0.05, pl_insolerr2=-0.05)
    row.update(kw)
    return row


def test_soft_labels_follow_the_error_bars():
    planets = pd.DataFrame([
        _planet(),                                        # Earth twin: surely habitable
        _planet(pl_rade=11.0),                            # a giant: surely not
        _planet(pl_rade=1.6, pl_radeerr1=0.3, pl_radeerr2=-0.3),  # on the rocky edge: ~0.5
        _planet(st_teff=2566.0, st_tefferr1=30.0, st_tefferr2=-30.0),  # TRAPPIST-1-like: NaN
    ])
    p = hab.p_habitable(planets, n_samples=4000, seed=1)
    assert p[0] == 1.0 and p[1] == 0.0
    assert 0.4 < p[2] < 0.6
    assert np.isnan(p[3])
    np.testing.assert_array_equal(p, hab.p_habitable(planets, n_samples=4000, seed=1))


def test_label_table_columns_and_dtypes():
    table = hab.label_table(pd.DataFrame([_planet(), _planet(st_teff=np.nan)]), n_samples=64)
    assert list(table.columns) == ["pl_name", "hostname", "hz_conservative", "hz_optimistic", "rocky",
                                   "habitable_phl", "habitable", "esi", "p_habitable"]
    assert table["habitable"].tolist()[0] is True
    assert pd.isna(table["habitable"].iloc[1])
