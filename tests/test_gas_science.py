"""Issue 25: the pieces that make the gas-detection verdict honest — the correlated noise floor has
the stated covariance, the bright limit excludes the hosts it says, the flow posterior is calibrated
on a problem whose posterior is known, and the paired bootstrap matches a case computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import observing as obs
from astrobio_lib.data import transmission as tx
from astrobio_lib.tasks.gas_detection import baselines as bl
from astrobio_lib.tasks.gas_detection import posterior

WL = np.sqrt(tx.PRISM_EDGES_UM[:-1] * tx.PRISM_EDGES_UM[1:])


def test_correlated_floor_has_the_stated_covariance():
    """200k draws of the floor: the empirical covariance matches floor² ((1-f) I + f exp(-Δlnλ²/2ℓ²))
    entry by entry, the marginal sigma is the 20 ppm of the white model, and neighbouring bins are
    correlated by the kernel (white: not at all)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200_000, len(WL)))
    for floor in obs.FLOOR_MODELS:
        noise = obs.FloorNoise(WL, floor)
        x = noise.draw(z)
        empirical = x.T @ x / len(x)
        ln = np.log(WL)
        kernel = np.exp(-0.5 * ((ln[:, None] - ln[None, :]) / obs.CORRELATION_LENGTH_LN) ** 2)
        f = obs.CORRELATED_FRACTION if floor == "correlated" else 0.0
        analytic = (20e-6) ** 2 * ((1 - f) * np.eye(len(WL)) + f * kernel)
        np.testing.assert_allclose(noise.covariance, analytic, rtol=1e-12, atol=1e-20)
        assert np.abs(empirical - analytic).max() < 0.02 * (20e-6) ** 2  # 200k draws: sampling error ~0.3%
        np.testing.assert_allclose(np.sqrt(np.diag(empirical)), 20e-6, rtol=0.01)
        neighbour = empirical[50, 51] / empirical[50, 50]
        assert (neighbour > 0.4) if floor == "correlated" else (abs(neighbour) < 0.01)
    with pytest.raises(ValueError, match="noise_floor: 'pink'"):
        obs.floor_covariance(WL, "pink")


def test_noise_of_a_spectrum_is_photon_plus_floor():
    """gas_spectra.noise draws photon noise (per-transit sigma / sqrt(N)) plus the floor: its
    empirical covariance is gas_spectra.covariance, for a star and N."""
    sigma_t = np.linspace(50e-6, 150e-6, len(WL))
    ds = gs.GasSpectra(tx.PRISM_EDGES_UM, WL, np.zeros((1, len(WL))), sigma_t[None], np.zeros((1, 5), bool),
                       np.full((1, 5), np.nan), np.array([300.0]), np.array([5.0]), np.array([np.nan]), np.array([0]),
                       pd.DataFrame({"hostname": ["a"]}), {"generator": {"noise_floor_ppm": 20.0}})
    rng = np.random.default_rng(1)
    m = 100_000
    x = gs.noise(ds, np.zeros(m, int), 10.0, rng.standard_normal((m, len(WL))), rng.standard_normal((m, len(WL))),
                 "correlated")
    expected = gs.covariance(ds, 0, 10.0, "correlated")
    assert np.abs(x.T @ x / m - expected).max() < 0.03 * expected.max()
    np.testing.assert_allclose(np.sqrt(np.diag(expected)), ds.sigma(10.0)[0], rtol=1e-12)  # what the inputs divide by


def test_saturation_excludes_the_hosts_brighter_than_the_limit():
    """J from sy_jmag when the catalog has it, else K + (J-K)(Teff); hosts brighter than J = 10.5 are
    left out with saturation: exclude and flagged with keep; the record names them."""
    assert obs.j_minus_k(3100) == pytest.approx(0.90) and obs.j_minus_k(5770) == pytest.approx(0.37)
    base = {"pl_rade": 1.0, "pl_bmasse": 1.0, "pl_orbper": 5.0, "pl_orbsmax": 0.03, "st_rad": 0.2, "st_mass": 0.2,
            "sy_dist": 10.0}
    rows = [{**base, "pl_name": "bright b", "hostname": "bright", "st_teff": 3100, "sy_kmag": 9.0},  # J 9.90
            {**base, "pl_name": "edge b", "hostname": "edge", "st_teff": 3100, "sy_kmag": 9.65},  # J 10.55
            {**base, "pl_name": "jmag b", "hostname": "jmag", "st_teff": 3100, "sy_kmag": 10.0, "sy_jmag": 10.2},
            {**base, "pl_name": "faint b", "hostname": "faint", "st_teff": 3100, "sy_kmag": 11.0}]
    planets = pd.DataFrame(rows)
    every = gs.eligible(planets, "keep").set_index("hostname")
    assert every.loc["jmag", "j_mag"] == 10.2 and every.loc["jmag", "j_mag_source"] == "sy_jmag"
    assert every.loc["bright", "j_mag"] == pytest.approx(9.9)
    assert every["saturates_prism"].to_dict() == {"bright": True, "edge": False, "jmag": True, "faint": False}
    kept = gs.rocky_planets(planets, 2, "exclude")
    assert set(kept["hostname"]) == {"edge", "faint"}
    record = gs.saturation_record(planets, kept, "exclude")
    assert set(record["excluded_hosts"]) <= {"bright", "jmag"} and record["limit_j_mag"] == 10.5
    flagged = gs.rocky_planets(planets, 4, "keep")
    assert set(gs.saturation_record(planets, flagged, "keep")["saturating_hosts_kept"]) == {"bright", "jmag"}
    with pytest.raises(ValueError, match="fainter than PRISM's bright limit"):
        gs.rocky_planets(planets, 3, "exclude")


def test_shipped_catalog_selection_respects_the_bright_limit(real_catalog):
    from astrobio_lib.data import catalog

    planets, _ = catalog.load_catalog("file", str(real_catalog))
    chosen = gs.rocky_planets(planets, 40)
    assert not chosen["saturates_prism"].any() and (chosen["j_mag"] >= obs.PRISM_SATURATION_J).all()
    assert "Proxima Cen" not in set(chosen["hostname"])  # K = 4.4: far beyond the limit
    assert len(gs.saturation_record(planets, chosen, "exclude")["excluded_hosts"]) > 0


@pytest.mark.slow
def test_flow_posterior_is_calibrated_on_a_known_posterior():
    """θ ~ N(0, I₂), x = θ + N(0, 0.5² I): the posterior is Gaussian and known. The task's flow head,
    trained by NPE on (θ, x) pairs, has expected coverage within 0.05 of the diagonal at every
    level; so does the exact posterior through the same coverage code (which checks the metric)."""
    from astrobio_lib.models.fusion import Encoded
    from astrobio_lib.tasks.gas_detection.model import GasHeadsConfig

    def encoded(x):  # the observation as both the fused token and the spectrum's own token
        return Encoded(torch.stack([x, x], 1), torch.zeros(len(x), 2, dtype=torch.bool), {}, {"spectrum": 1})

    torch.manual_seed(0)
    heads = GasHeadsConfig(n_gases=1, n_retrieval=2, flow_transforms=3, flow_hidden=64, flow_context_dropout=0.0).build(2)
    opt = torch.optim.Adam(heads.parameters(), 3e-3)
    sigma = 0.5
    for _ in range(1000):
        theta = torch.randn(256, 2)
        x = theta + sigma * torch.randn(256, 2)
        out = heads(x, encoded(x), {"gas_present": torch.zeros(256, 1), "gas_targets": theta})
        opt.zero_grad()
        out["loss_retrieval"].backward()
        opt.step()
    theta = torch.randn(2000, 2)
    x = theta + sigma * torch.randn(2000, 2)
    with torch.no_grad():
        out = heads(x, encoded(x), {"gas_present": torch.zeros(2000, 1), "gas_targets": theta, "posterior_samples": 200})
    flow = posterior.expected_coverage(out["retrieval_truth_log_prob"].numpy(), out["retrieval_samples_log_prob"].numpy())
    assert posterior.coverage_error(flow) <= 0.05, flow
    # the exact posterior N(x / (1 + σ²), σ² / (1 + σ²)) through the same code
    mu, var = x.numpy() / (1 + sigma**2), sigma**2 / (1 + sigma**2)
    samples = mu[:, None] + np.sqrt(var) * np.random.default_rng(0).standard_normal((2000, 200, 2))
    exact = posterior.expected_coverage(-0.5 * ((theta.numpy() - mu) ** 2).sum(-1) / var,
                                        -0.5 * ((samples - mu[:, None]) ** 2).sum(-1) / var)
    assert posterior.coverage_error(exact) <= 0.05
    # an over-confident posterior (variance a quarter of the truth's) is caught
    tight = -0.5 * ((theta.numpy() - mu) ** 2).sum(-1) / (var / 4)
    tight_s = -0.5 * (((samples - mu[:, None]) / 2) ** 2).sum(-1) / (var / 4)
    assert posterior.coverage_error(posterior.expected_coverage(tight, tight_s)) > 0.3


def test_paired_bootstrap_reproduces_a_case_computed_by_hand():
    """Two host stars, two noiseless spectra each, one noise draw per spectrum. Star A: spectra
    (y=1, model 0.9, baseline 0.4) and (y=0, 0.2, 0.6); star B: (y=1, 0.7, 0.7) and (y=0, 0.3, 0.1).
    Point estimate: AUROC(model) = 1, AUROC(baseline) = 3/4 (pairs: 0.4<0.6 wrong, 0.4>0.1, 0.7>0.6,
    0.7>0.1), Δ = 1/4. The two-stage bootstrap draws 2 stars, then 2 spectra within each: its
    distribution of Δ, enumerated by hand over the 4 x 4 x 4 equally likely outcomes (resamples
    without both classes dropped), has a known mean the bootstrap approaches."""
    y = np.array([1, 0, 1, 0])
    a = np.array([0.9, 0.2, 0.7, 0.3])
    b = np.array([0.4, 0.6, 0.7, 0.1])
    hosts = np.array(["A", "A", "B", "B"])
    spectra = np.array([0, 1, 2, 3])
    assert bl.auroc(y, a) == 1.0 and bl.auroc(y, b) == 0.75
    # exact enumeration: hosts (h1, h2) in {A, B}², then two spectra per drawn host
    by_host = {"A": [0, 1], "B": [2, 3]}
    deltas = []
    for h in itertools.product("AB", repeat=2):
        for picks in itertools.product(*[list(itertools.product(by_host[x], repeat=2)) for x in h]):
            idx = np.array([i for pick in picks for i in pick])
            if len(set(y[idx])) == 2:
                deltas.append(bl.auroc(y[idx], a[idx]) - bl.auroc(y[idx], b[idx]))
    exact_mean = float(np.mean(deltas))
    sets = bl.resamples(hosts, spectra, 20_000, seed=0)
    assert all(len(s) == 4 for s in sets)
    delta, lo, hi = bl.paired_delta(y, a, b, sets)
    assert delta == 0.25
    boot = [bl.auroc(y[s], a[s]) - bl.auroc(y[s], b[s]) for s in sets if len(set(y[s])) == 2]
    assert np.mean(boot) == pytest.approx(exact_mean, abs=0.01)
    assert (lo, hi) == (pytest.approx(np.percentile(boot, 2.5)), pytest.approx(np.percentile(boot, 97.5)))
    assert bl.verdict_of(lo, hi) == ("beats" if lo > 0 else "not distinguishable")
    # a resample keeps a spectrum's noise draws together, and draws stars before spectra
    hosts2 = np.repeat(["A", "B"], 6)
    spectra2 = np.repeat([0, 1, 2, 3], 3)
    for s in bl.resamples(hosts2, spectra2, 50, seed=1):
        counts = np.bincount(spectra2[s], minlength=4)
        assert set(counts) <= {0, 3, 6, 9, 12}


def test_verdict_and_gap():
    assert bl.verdict_of(0.01, 0.05) == "beats" and bl.verdict_of(-0.05, -0.01) == "worse"
    assert bl.verdict_of(-0.01, 0.02) == "not distinguishable"
    curves = pd.DataFrame([{"baseline": p, "gas": "CO2", "n_transits": 10, "auroc": v}
                           for p, v in (("model", 0.8), ("band_depths", 0.7), ("spectrum_gbt", 0.75), ("oracle", 0.95),
                                        ("catalog", 0.5))])
    gap = bl.gap_closed(curves)
    assert gap["gap_closed"].iloc[0] == pytest.approx((0.8 - 0.75) / (0.95 - 0.75))
    assert bl.strongest_baseline(curves) == "spectrum_gbt"
