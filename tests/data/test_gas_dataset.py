"""Issue 14: the gas-detection task through the trainer — items built from the SIMULATED spectra, no
input a function of a target, the test draws equal to the baselines', the heads' losses, a run that
trains and resumes exactly, and its evaluation (detection curves, verdicts, retrieval coverage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrobio_lib.data import gas_dataset as gd
from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data.loader import Collate


@pytest.fixture(scope="module")
def split(smoke_spectra):
    return gs.host_split(smoke_spectra.hostname, 0)


def test_no_input_modality_is_a_function_of_a_target(smoke_spectra, split):
    """Every input but the spectrum is the same for every atmosphere of a planet (so it cannot carry
    a gas, an abundance, the temperature, the pressure or the cloud deck), and the task has no
    climate datacube, metabolic graph or text (built from the habitability task's assumed gases)."""
    ds = gd.GasDetectionDataset(smoke_spectra, split, "train", draws=1, seed=0, transits=(10,))
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
    batch = Collate(ds.graphs)(items[:8])
    assert not batch["has_climate"].any() and not batch["has_graph"].any() and not batch["has_text"].any()
    assert batch["graph"] is None and batch["has_spectrum"].all()


def test_splits_share_no_noiseless_spectrum_and_test_draws_are_the_baselines(smoke_spectra, split):
    from astrobio_lib.gas_detection import normalised

    parts = {w: gd.GasDetectionDataset(smoke_spectra, split, w, draws=2, seed=0) for w in ("train", "val", "test")}
    rows = {w: set(d.rows) for w, d in parts.items()}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    hosts = {w: set(smoke_spectra.hostname[list(r)]) for w, r in rows.items()}
    assert not hosts["train"] & hosts["test"] and not hosts["train"] & hosts["val"]
    test = parts["test"]
    at = test.n_transits == 30
    x, rep = gs.noisy(smoke_spectra, np.flatnonzero(split == "test"), 30, 2, seed=0 + 17 * 30 + 1)
    np.testing.assert_array_equal(test.rows[at], rep)
    np.testing.assert_allclose(test.spectrum.numpy()[at], normalised(smoke_spectra, x, rep, 30), rtol=1e-6, atol=1e-5)


def test_targets_are_standardised_by_the_training_split_and_invert(smoke_spectra, split):
    train = gd.GasDetectionDataset(smoke_spectra, split, "train", draws=1, seed=0, transits=(1,))
    test = gd.GasDetectionDataset(smoke_spectra, split, "test", draws=1, seed=0, transits=(1,))
    np.testing.assert_array_equal(train.target_mean, test.target_mean)  # the test split never sets them
    truth = gd.retrieval_truth(smoke_spectra)
    back = test.physical(test.targets.numpy().astype(float))
    np.testing.assert_allclose(back, truth, rtol=1e-5, atol=1e-4)
    # an absent gas has no abundance target; a present one has one
    assert np.array_equal(np.isfinite(truth[:, :5]), smoke_spectra.present)


def test_gas_losses_are_bce_and_gaussian_nll_over_present_targets(smoke_spectra, split):
    import torch.nn.functional as F

    from astrobio_lib.models.fusion import build_model
    from astrobio_lib.models.presets import get_preset

    ds = gd.GasDetectionDataset(smoke_spectra, split, "val", draws=1, seed=0, transits=(3,))
    batch = Collate([])([ds[i] for i in range(6)])
    model = build_model(get_preset("tiny"), seed=0)
    out = model(batch)
    bce = F.binary_cross_entropy_with_logits(out["gas_logits"], batch["gas_present"])
    torch.testing.assert_close(out["loss_gas_detection"], bce)
    y, mu, lv = batch["gas_targets"], out["retrieval_mean"], out["retrieval_log_var"]
    has = ~torch.isnan(y)
    nll = 0.5 * (lv + (y - mu) ** 2 / lv.exp())
    torch.testing.assert_close(out["loss_retrieval"], nll[has].mean())
    assert float(out["loss_habitability"].detach()) == 0.0  # no habitability label in this task
    out["loss"].backward()
    assert model.gas_head.weight.grad.abs().sum() > 0 and model.retrieval_head.weight.grad.abs().sum() > 0
    assert model.text_encoder.embed.weight.grad is None  # the LLM never ran


def test_a_batch_without_gas_labels_gives_zero_gas_losses_in_the_graph():
    from astrobio_lib.models.fusion import build_model
    from astrobio_lib.models.presets import get_preset
    from astrobio_lib.models.synthetic import synthetic_batch

    cfg = get_preset("tiny")
    batch = synthetic_batch(cfg, batch_size=2)
    del batch["gas_present"], batch["gas_targets"]
    out = build_model(cfg, seed=0)(batch)
    assert float(out["loss_gas_detection"].detach()) == 0.0 and float(out["loss_retrieval"].detach()) == 0.0
    assert out["loss_gas_detection"].requires_grad


def _gas_params(run, **kw):
    return {"run_dir": str(run), "task": "gas_detection", "gas_train_draws": 1, "micro_batch_size": 16,
            "grad_accum_steps": 1, "learning_rate": 1e-3, "schedule": "constant", "warmup_steps": 0,
            "val_every_steps": 4, "checkpoint_every_steps": 4, "log_every_steps": 4, "memory_every_steps": 100,
            "wandb_mode": "disabled", **kw}


@pytest.mark.slow
def test_gas_task_trains_resumes_exactly_and_evaluates(tmp_path, smoke_spectra):
    from astrobio_lib import config, evaluate
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
    assert flat["task"] == "gas_detection" and flat["gas_spectra_key"] == "smoke-test"

    result = evaluate.evaluate_gas_run(tmp_path / "run", draws=1, bootstrap=10)
    curves, verdict = result["curves"], result["verdict_table"]
    assert set(curves["baseline"]) == {"model", "catalog", "band_depths", "spectrum_gbt"}
    assert len(verdict) == 25 and set(verdict["verdict"]) <= {"beats", "worse", "not distinguishable"}
    r = result["retrieval_table"]
    assert set(r["target"]) == set(gd.RETRIEVAL_TARGETS)
    assert r["coverage_68"].between(0, 1).all() and (r["coverage_95"] >= r["coverage_68"]).all()
    assert (tmp_path / "run" / "gas_detection_curves.csv").is_file() and (tmp_path / "run" / "gas_evaluation.json").is_file()


def test_gas_task_without_spectra_names_notebook_01(tmp_path):
    from astrobio_lib import config
    from astrobio_lib.train.loop import DatasetNotBuilt, train

    with pytest.raises(DatasetNotBuilt, match="gas_planets > 0"):
        train(config.from_mapping(_gas_params(tmp_path / "run", max_steps=2)))


def test_gas_task_with_no_gas_planets_is_refused_before_anything_runs():
    from astrobio_lib import config

    with pytest.raises(config.ConfigError, match="task: gas_detection .* gas_planets: 0"):
        config.from_mapping({"task": "gas_detection", "gas_planets": 0})
