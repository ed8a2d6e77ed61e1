"""Issues 14 and 25: the gas-detection task through the trainer — items built from the SIMULATED
spectra (fresh noise per epoch for training, fixed draws for validation and test), no input a function
of a target, the test draws equal to the baselines', the heads' losses (BCE + flow NLL), a run that
trains and resumes exactly, and its evaluation (paired verdicts, the oracle ceiling, coverage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrobio_lib import tasks
from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.tasks.gas_detection import dataset as gd


@pytest.fixture(scope="module")
def split(smoke_spectra):
    return gd.split(smoke_spectra, 0)


def test_no_input_modality_is_a_function_of_a_target(smoke_spectra, split):
    """Every input but the spectrum is the same for every atmosphere of a planet (so it cannot carry
    a gas, an abundance, the temperature, the pressure or the cloud deck), and the task has no
    climate datacube, metabolic graph or text (built from the habitability task's assumed gases)."""
    ds = gd.GasDetectionDataset(smoke_spectra, split, "val", draws=1, seed=0, transits=(10,))
    items = [ds[i] for i in range(len(ds))]
    by_planet: dict[int, list] = {}
    for it in items:
        by_planet.setdefault(int(smoke_spectra.planet[ds.rows[int(it["record"])]]), []).append(it)
    varied = 0
    for group in by_planet.values():
        present = {tuple(it["gas_present"].tolist()) for it in group}
        varied += len(present) > 1
        for it in group[1:]:
            assert torch.equal(it["catalog"], group[0]["catalog"])
            assert torch.equal(it["catalog_mask"], group[0]["catalog_mask"])
        assert len({it["spectrum"].numpy().tobytes() for it in group}) == len(group)  # the spectrum does vary
    assert varied >= len(by_planet) // 2  # the targets vary within a planet while those inputs do not
    batch = gd.collate(items[:8])
    assert set(batch) == {"record", "catalog", "catalog_mask", "spectrum", "has_spectrum", "spectrum_context",
                          "gas_present", "gas_targets", "n_transits"}  # no climate, graph or text
    assert batch["has_spectrum"].all() and tasks.get("gas_detection").modalities == ("catalog", "spectrum")


def test_splits_share_no_noiseless_spectrum_and_test_draws_are_the_baselines(smoke_spectra, split):
    parts = {w: gd.GasDetectionDataset(smoke_spectra, split, w, draws=2, seed=0) for w in ("train", "val", "test")}
    rows = {w: set(d.rows) for w, d in parts.items()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    hosts = {w: set(smoke_spectra.hostname[list(r)]) for w, r in rows.items()}
    assert not hosts["train"] & hosts["test"] and not hosts["train"] & hosts["val"]
    test = parts["test"]
    at = test.n_transits == 30
    x, rep = gs.noisy(smoke_spectra, np.flatnonzero(split == "test"), 30, 2, seed=0 + 17 * 30 + 1)
    np.testing.assert_array_equal(test.rows[at], rep)
    np.testing.assert_allclose(test.spectrum.numpy()[at], gd.normalised(smoke_spectra, x, rep, 30), rtol=1e-6, atol=1e-5)


def test_targets_are_unbounded_latents_and_invert(smoke_spectra, split):
    train = gd.GasDetectionDataset(smoke_spectra, split, "train", draws=1, seed=0, transits=(1,))
    test = gd.GasDetectionDataset(smoke_spectra, split, "test", draws=1, seed=0, transits=(1,))
    latent, truth = gd.latent_truth(smoke_spectra), gd.retrieval_truth(smoke_spectra)
    np.testing.assert_array_equal(train.targets.numpy(), test.targets.numpy())  # per spectrum: no split statistics
    back = test.physical(test.targets.numpy().astype(float))
    np.testing.assert_allclose(back, latent, rtol=1e-5, atol=1e-3)
    # under the prior the unbounded targets are standard normal; any z maps back inside the prior's bounds
    z = test.targets.numpy()
    assert abs(z.mean()) < 0.15 and 0.8 < z.std() < 1.2
    wild = gd.to_physical(np.random.default_rng(0).normal(0, 5, (1000, 8)))
    assert (wild[:, 7] >= 3).all() and (wild[:, 7] <= wild[:, 6]).all() and (wild[:, 5] >= 200).all()
    # the latent equals the truth wherever there is one; absent gases get a prior draw inside the prior
    has = np.isfinite(truth)
    np.testing.assert_array_equal(latent[has], truth[has])
    assert np.isfinite(latent).all()
    from astrobio_lib.data import transmission as tx

    for k, g in enumerate(tx.GASES):
        lo, hi = tx.VMR_PRIORS[g]
        assert ((latent[:, k] >= lo) & (latent[:, k] <= hi)).all()


def test_fresh_noise_differs_per_epoch_and_is_reproducible(smoke_spectra, split):
    """Training items draw noise, N and the absent gases' latents at use time from Philox keyed by
    (seed, item, epoch): two epochs of one item differ; the same (epoch, item) is bitwise the same
    array whenever (and in whichever dataset copy) it is computed."""
    train = gd.GasDetectionDataset(smoke_spectra, split, "train", draws=2, seed=3, fresh=True)
    again = gd.GasDetectionDataset(smoke_spectra, split, "train", draws=2, seed=3, fresh=True)
    assert train.keyed_by_epoch and len(train) == 2 * int((split == "train").sum())
    a, b, c = train[(0, 5)], train[(1, 5)], again[(0, 5)]
    assert not torch.equal(a["spectrum"], b["spectrum"]) and a["n_transits"] != b["n_transits"]
    for k in a:
        assert torch.equal(a[k], c[k]), k
    n = np.array([float(train[(e, 5)]["n_transits"]) for e in range(200)])
    assert n.min() >= 1 and n.max() <= 100 and (n < 3).any() and (n > 30).any()  # log-uniform over 1-100
    np.testing.assert_allclose(a["spectrum_context"].numpy(), [np.log10(float(a["n_transits"])) - 1], rtol=1e-5)
    r = int(train.rows[5])
    absent = torch.from_numpy(~smoke_spectra.present[r])
    if absent.any():  # what the spectrum cannot show is redrawn; the rest is the truth
        assert not torch.equal(a["gas_targets"][:5][absent], b["gas_targets"][:5][absent])
    torch.testing.assert_close(a["gas_targets"][:5][~absent], b["gas_targets"][:5][~absent])
    with pytest.raises(ValueError, match="split 'nope'"):
        gd.GasDetectionDataset(smoke_spectra, split, "nope", draws=1, seed=0)


def test_gas_losses_are_bce_and_the_flow_nll(smoke_spectra, split):
    import torch.nn.functional as F

    from astrobio_lib.models.fusion import build_model

    ds = gd.GasDetectionDataset(smoke_spectra, split, "val", draws=1, seed=0, transits=(3,))
    batch = gd.collate([ds[i] for i in range(6)])
    model = build_model(tasks.model_config({"task": "gas_detection", "model_preset": "tiny"}), seed=0)
    model.eval()  # the flow's context dropout draws a new mask per call; eval mode makes the two calls comparable
    out = model(batch)
    bce = F.binary_cross_entropy_with_logits(out["gas_logits"], batch["gas_present"])
    torch.testing.assert_close(out["loss_gas_detection"], bce)
    fused = model.fuse(model.encode(batch))
    nll = -model.heads.distribution(fused).log_prob(batch["gas_targets"]) / batch["gas_targets"].shape[1]
    torch.testing.assert_close(out["loss_retrieval"], nll.mean())
    torch.testing.assert_close(out["loss"], out["loss_gas_detection"] + out["loss_retrieval"])
    assert sorted(k for k in out if k.startswith("loss")) == ["loss", "loss_gas_detection", "loss_retrieval"]
    model.train()
    out = model(batch)
    out["loss"].backward()
    assert model.heads.gas_head.weight.grad.abs().sum() > 0
    assert sum(p.grad.abs().sum() for p in model.heads.posterior.parameters() if p.grad is not None) > 0
    assert model.spectrum_encoder.net[0].weight.grad.abs().sum() > 0  # trained by detection
    assert not hasattr(model, "text_encoder")  # no LLM in this task's model
    with torch.no_grad():
        drawn = model({**batch, "posterior_samples": 7})
    assert drawn["retrieval_samples"].shape == (6, 7, 8) and drawn["retrieval_samples_log_prob"].shape == (6, 7)
    without = {k: v for k, v in batch.items() if k != "spectrum_context"}
    with pytest.raises(ValueError, match="spectrum_context"):
        model(without)


def _gas_params(run, **kw):
    return {"run_dir": str(run), "task": "gas_detection", "gas_train_draws": 1, "micro_batch_size": 16,
            "grad_accum_steps": 1, "learning_rate": 1e-3, "schedule": "constant", "warmup_steps": 0,
            "val_every_steps": 4, "checkpoint_every_steps": 4, "log_every_steps": 4, "memory_every_steps": 100,
            "wandb_mode": "disabled", **kw}


@pytest.mark.slow
def test_gas_task_trains_resumes_exactly_and_evaluates(tmp_path, smoke_spectra):
    from astrobio_lib import config
    from astrobio_lib.tasks.gas_detection.evaluation import evaluate_gas_run
    from astrobio_lib.train import checkpoint as ckpt
    from astrobio_lib.train.loop import train

    for run in ("ref", "run"):
        gs.save(smoke_spectra, tmp_path / run / "data" / "gas_spectra", key="smoke-test")
    ref = train(config.from_mapping(_gas_params(tmp_path / "ref", max_steps=8)))
    assert ref.step == 8
    train(config.from_mapping(_gas_params(tmp_path / "run", max_steps=4)))
    resumed = train(config.from_mapping(_gas_params(tmp_path / "run", max_steps=8)))
    assert resumed.resumed_from and resumed.step == 8
    a, _, _ = ckpt.load_model_weights(tmp_path / "ref" / "checkpoints", "latest")
    b, flat, _ = ckpt.load_model_weights(tmp_path / "run" / "checkpoints", "latest")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert flat["task"] == "gas_detection" and flat["dataset_build_sha256"] == "smoke-test"
    assert (flat["gas_planets"], flat["gas_atmospheres"]) == (40, 10)  # the data's own settings, from its manifest

    # a data-shaping key changed between the stop and the resume: refused naming it, exit 2 (never the data
    # order's bare ValueError)
    import subprocess
    import sys

    import yaml

    from ..conftest import REPO

    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(_gas_params(tmp_path / "run", max_steps=12, gas_train_draws=2)))
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.train", str(changed)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "gas_train_draws: 1 -> 2" in res.stderr and "Traceback" not in res.stderr

    result = evaluate_gas_run(tmp_path / "run", draws=1, bootstrap=10)
    assert result["noise_floor"] == "correlated"  # the run's own floor (the product default), not a silent white
    curves, paired = result["curves"], result["paired_table"]
    assert set(curves["baseline"]) == {"model", "catalog", "band_depths", "spectrum_gbt", "oracle"}
    assert len(paired) == 75 and set(paired["against"]) == {"catalog", "band_depths", "spectrum_gbt"}
    assert set(paired["verdict"]) <= {"beats", "worse", "not distinguishable"}
    assert (paired["delta_lo"] <= paired["delta_auroc"] + 1e-9).all()
    assert (paired["delta_auroc"] <= paired["delta_hi"] + 1e-9).all()
    assert result["strongest_baseline"] in ("band_depths", "spectrum_gbt")
    r = result["retrieval_table"]
    assert set(r["target"]) == set(gd.RETRIEVAL_TARGETS)
    assert r["coverage_68"].between(0, 1).all() and (r["coverage_95"] >= r["coverage_68"]).all()
    cov = result["coverage"]
    assert set(cov["n_transits"]) == {0, 1, 3, 10, 30, 100} and cov["coverage"].between(0, 1).all()
    for name in ("gas_detection_curves.csv", "gas_paired.csv", "gas_coverage.csv", "gas_evaluation.json"):
        assert (tmp_path / "run" / name).is_file(), name


def test_gas_task_without_spectra_names_notebook_01(tmp_path):
    from astrobio_lib import config
    from astrobio_lib.train.loop import DatasetNotBuilt, train

    with pytest.raises(DatasetNotBuilt, match="gas_planets > 0"):
        train(config.from_mapping(_gas_params(tmp_path / "run", max_steps=2)))


def test_gas_task_with_no_gas_planets_is_refused_before_anything_runs():
    from astrobio_lib import config

    with pytest.raises(config.ConfigError, match="task: gas_detection .* gas_planets: 0"):
        config.from_mapping({"task": "gas_detection", "gas_planets": 0})


@pytest.mark.slow
def test_oracle_is_a_ceiling_on_the_smoke_build(smoke_spectra, split):
    """The likelihood-ratio oracle (knows every parameter but the gas) scores at least every baseline's
    AUROC, within 0.01, in every gas x N cell of the smoke build (20 noise draws per test spectrum, the
    default correlated floor); its companions are TauREx spectra with the gas toggled."""
    from astrobio_lib.tasks.gas_detection import baselines as bl
    from astrobio_lib.tasks.gas_detection.evaluation import oracle_scorer

    scorer = oracle_scorer(smoke_spectra, np.flatnonzero(split == "test"), "correlated")
    curves = bl.detection_curves(smoke_spectra, split, draws=20, bootstrap=10, floor="correlated",
                                 scorers={"oracle": scorer})
    a = curves.pivot_table(index=["gas", "n_transits"], columns="baseline", values="auroc")
    margin = a["oracle"] - a.drop(columns="oracle").max(axis=1)
    assert (margin >= -0.01).all(), margin[margin < -0.01]
    assert a.loc["CO2", "oracle"].loc[30] > 0.7  # and it is a real detector, not a flat line
