import subprocess
import sys

import pytest
import torch

from astrobio_lib import memory, tasks
from astrobio_lib.models.fusion import MODALITIES, build_model
from astrobio_lib.models.presets import count_parameters, get_preset
from astrobio_lib.models.synthetic import synthetic_batch


def full(preset: str = "tiny", **kw):
    """The model with every modality: the habitability task's."""
    return tasks.get("habitability").model(get_preset(preset, **kw))


def test_tiny_forward_backward_every_parameter_gets_a_gradient():
    cfg = full()
    model = build_model(cfg, seed=0)
    batch = synthetic_batch(cfg, batch_size=4, seed=0)
    out = model(batch)
    assert torch.isfinite(out["loss"])
    for name in ("loss_habitability", "loss_reconstruction", "loss_physics", "loss_consistency",
                 "loss_language", "loss_climate_state", "loss_biosignature"):
        assert torch.isfinite(out[name]) and out[name] > 0, name
    out["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("modality", MODALITIES)
def test_missing_modality_sends_no_gradient_into_its_encoder(modality):
    cfg = full()
    model = build_model(cfg, seed=0)
    batch = synthetic_batch(cfg, batch_size=3, seed=1, missing=[(0, modality)])
    out = model(batch)
    assert torch.isfinite(out["loss"])
    # the loss of sample 0 alone (which lacks the modality) must not reach that encoder
    out["habitability_logit"][0].backward(retain_graph=True)
    encoder = {"catalog": model.catalog_encoder, "climate": model.climate_encoder,
               "graph": model.graph_encoder, "spectrum": model.spectrum_encoder,
               "text": model.text_encoder}[modality]
    for name, p in encoder.named_parameters():
        assert p.grad is None or p.grad.abs().max() == 0, f"{modality}: {name} got gradient from a missing sample"
    # while a sample that has it does send gradient there
    model.zero_grad()
    out["habitability_logit"][1].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_all_optional_modalities_missing_at_once():
    cfg = full()
    model = build_model(cfg, seed=0)
    missing = [(i, m) for i in range(2) for m in MODALITIES if m != "catalog"]
    out = model(synthetic_batch(cfg, batch_size=2, missing=missing))
    assert torch.isfinite(out["loss"]) and out["loss_language"] == 0 and out["loss_reconstruction"] == 0


def test_initialisation_is_deterministic_from_the_seed():
    cfg = full()
    a, b, c = build_model(cfg, seed=3), build_model(cfg, seed=3), build_model(cfg, seed=4)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), n
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_loss_weights_are_the_seeds_and_apply():
    cfg = full()
    assert cfg.heads.loss_weights == {"classification": 1.0, "reconstruction": 0.1, "physics": 0.2,
                                      "consistency": 0.15, "language": 0.1}  # the seeds'
    model = build_model(cfg, seed=0)
    out = model(synthetic_batch(cfg))
    w = cfg.heads.loss_weights
    expected = (w["classification"] * out["loss_classification"] + w["reconstruction"] * out["loss_reconstruction"]
                + w["physics"] * out["loss_physics"] + w["consistency"] * out["loss_consistency"]
                + w["language"] * out["loss_language"])
    torch.testing.assert_close(out["loss"], expected)


def test_a_gas_detection_model_builds_no_llm_and_its_budget_has_no_llm_term():
    """The gas-detection task encodes the catalog and the spectrum: no parameter of an LLM (or of the
    datacube and graph encoders) exists in its model, and the memory budget counts none."""
    cfg = tasks.model_config({"task": "gas_detection", "model_preset": "small"})
    model = build_model(cfg, device="meta")
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.startswith(("text_encoder", "text_proj", "climate_encoder", "graph_encoder"))]
    assert not hasattr(model, "text_encoder") and cfg.modalities == ("catalog", "spectrum")
    est = memory.estimate(cfg, memory.Plan(precision="bf16-mixed", optimizer="adamw"), memory.BatchShape(256, 0, 1),
                          memory.hardware_from("RTX A5000", 1, 24.0, 32.0))
    assert set(est.parameters) == {"fusion_and_heads", "total"} and set(est.activations_by_component) == {"fusion_and_heads"}
    assert est.tokens_per_step == 0 and "end of LLM backward" not in est.phases
    assert set(memory.flops_per_sample(cfg, memory.BatchShape(256, 0, 1), est.plan)) == {"fusion_and_heads"}
    plans = memory.plans(cfg, memory.hardware_from("RTX A5000", 1, 24.0, 32.0), memory.BatchShape(256, 0, 1))
    assert {v.estimate.plan.llm_adapter for v in plans} == {"none"}  # no LoRA / QLoRA plans for a model without an LLM
    # the habitability model of the same preset has the LLM, and the LoRA plans
    hab = tasks.model_config({"task": "habitability", "model_preset": "small"})
    assert "llm" in count_parameters(hab) and "llm" not in count_parameters(cfg)


def test_graph_count_mismatch_is_a_clear_error():
    cfg = full()
    batch = synthetic_batch(cfg, batch_size=2)
    batch["has_graph"] = torch.tensor([True, True])
    batch["graph"] = synthetic_batch(cfg, batch_size=1)["graph"]
    with pytest.raises(ValueError, match="holds 1 graphs but has_graph marks 2"):
        build_model(cfg)(batch)


def test_preset_sizes():
    tiny = count_parameters(full())
    assert tiny["total"] < 1_000_000
    seeds = count_parameters(get_preset("seeds_full"))
    for component, stated in {"llm": 13.14e9, "graph_vae": 1.2e9, "datacube_cnn": 2.5e9}.items():
        assert abs(seeds[component] / stated - 1) < 0.02, (component, seeds[component])
    small = count_parameters(full("small"))
    # 16 bytes/parameter of fp32 AdamW state must leave most of a 24 GB GPU for activations
    assert small["total"] * 16 < 0.25 * 24e9
    with pytest.raises(ValueError, match="model preset 'huge'"):
        get_preset("huge")


def test_presets_cli_prints_the_table_quickly():
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.models.presets"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "seeds_full" in res.stdout and "13,151,269,632" in res.stdout
    assert "no weights allocated" in res.stdout


def test_gas_model_detection_trains_the_spectrum_encoder_and_the_flow_everything_else():
    """Detection reads the spectrum token alone and the fusion reads it detached: the detection loss
    reaches only the spectrum encoder and its head, the flow's loss only the catalog encoder, the
    fusion and the flow — and together they train every parameter (none is dead weight)."""
    cfg = tasks.model_config({"task": "gas_detection", "model_preset": "tiny"})
    model = build_model(cfg, seed=0)
    batch = synthetic_batch(cfg, batch_size=4, seed=0)

    def reached(loss_key):
        model.zero_grad(set_to_none=True)
        model(batch)[loss_key].backward()
        return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    detection, flow = reached("loss_gas_detection"), reached("loss_retrieval")
    assert detection and all(n.startswith(("spectrum_encoder.", "heads.gas_head.", "modality_embed")) for n in detection)
    assert not [n for n in flow if n.startswith(("spectrum_encoder.", "heads.gas_head."))]
    assert any(n.startswith("catalog_encoder.") for n in flow) and any(n.startswith("fusion.") for n in flow)
    assert {n for n, _ in model.named_parameters()} == detection | flow
