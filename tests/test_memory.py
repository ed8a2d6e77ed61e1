import time

import pytest
import torch

from astrobio_lib import memory
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.synthetic import synthetic_batch

from .conftest import full_preset


def test_state_byte_rules():
    # mixed-precision AdamW: 16 bytes/parameter (ZeRO paper total)
    assert sum(memory.state_bytes_per_param("bf16-mixed", "adamw").values()) == 16.0
    assert sum(memory.state_bytes_per_param("fp32", "adamw").values()) == 16.0
    # bitsandbytes 8-bit: 2 uint8 moments + fp32 absmax per 256-element block per moment
    assert memory.optimizer_state_bytes_per_param("adamw8bit") == pytest.approx(2.03125)
    assert memory.optimizer_state_bytes_per_param("adamw8bit", numel=4095) == 8.0
    assert sum(memory.state_bytes_per_param("bf16", "adamw8bit").values()) == pytest.approx(6.03125)
    with pytest.raises(ValueError, match="precision='fp8'"):
        memory.state_bytes_per_param("fp8", "adamw")


def test_a5000_peak_from_its_data_sheet():
    a5000 = memory.DEVICES["RTX A5000"]
    assert a5000.peak_flops_bf16 == pytest.approx(256 * 128 * 2 * 1.695e9, rel=0.01)


def test_korthikanti_formula_by_hand():
    # s=512, b=1, h=4352, a=64: 512*4352*(34 + 5*64*512/4352) = 512*4352*34 + 5*64*512*512
    assert memory.korthikanti_layer_bytes(512, 1, 4352, 64, fused_attention=False) == pytest.approx(
        512 * 4352 * 34 + 5 * 64 * 512 * 512)
    assert memory.korthikanti_layer_bytes(512, 1, 4352, 64) == 512 * 4352 * 34


def test_llm_layer_activation_rule_by_hand():
    """One LLM layer, fp32, b=2, s=8, h=16, 4 heads of 4, 2 kv heads, I=24:
    (8h + 2h_kv + 4I + a + 2) * b * s * 4 bytes = (128 + 16 + 96 + 4 + 2) * 64 = 15744."""
    from astrobio_lib.models.fusion import MultimodalConfig
    from astrobio_lib.models.llm import LLMConfig

    cfg = MultimodalConfig(llm=LLMConfig(vocab_size=32, hidden=16, n_layers=1, n_heads=4, n_kv_heads=2,
                                         intermediate=24, max_seq_len=8))
    low, f32, layers, _ = memory._llm_activation_elements(cfg, 2, 8, memory.Plan(precision="fp32"))
    assert (low + f32) * 4 == 15744 and layers == 1


@pytest.mark.parametrize("ckpt", [False, True])
def test_estimate_matches_a_measured_step(ckpt):
    cfg = full_preset("tiny", activation_checkpointing=ckpt)
    batch = synthetic_batch(cfg, batch_size=3, seq_len=64, seed=0, nodes_per_graph=12)
    plan = memory.Plan(precision="fp32", optimizer="adamw", activation_checkpointing=ckpt)
    meas = memory.measure(build_model(cfg, seed=0), batch, plan)
    nodes, edges = 12, batch["graph"].edge_index.shape[1] // 3
    est = memory.estimate(cfg, plan, memory.BatchShape(3, 64, 1, nodes, edges))
    for key in ("parameters", "gradients", "optimizer"):
        assert est.device[key] == meas.device[key], key  # exact
    err = est.measured_comparable / meas.comparable - 1
    assert -0.05 < err < 0.10, f"error {100 * err:.1f}%"


def _saved_storage_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("d_model", [64, 256])
def test_gas_flow_activation_rule_matches_what_autograd_saves(d_model):
    """The gas heads' memory rule for its zuko flow: exact per step, within 1% per sample (two batch
    sizes separate the two), with a context that needs gradients."""
    import zuko

    from astrobio_lib.tasks.gas_detection.model import GasHeadsConfig

    cfg = GasHeadsConfig()
    flow = zuko.flows.NSF(features=cfg.n_retrieval, context=d_model, transforms=cfg.flow_transforms,
                          hidden_features=(cfg.flow_hidden, cfg.flow_hidden), passes=2)
    measured = {}
    for b in (8, 128):
        c = torch.randn(b, d_model, requires_grad=True)
        measured[b] = _saved_storage_bytes(lambda c=c, b=b: flow(c).log_prob(torch.randn(b, cfg.n_retrieval)).sum())
    detection = lambda b: 4 * b * (d_model + cfg.n_gases)  # noqa: E731 - the detection head's part (spectrum token, logits)
    rule = {b: cfg.activation_bytes(b, d_model) - detection(b) for b in (8, 128)}
    per_sample, rule_per_sample = ((m[128] - m[8]) / 120 for m in (measured, rule))
    assert rule[8] - 8 * rule_per_sample == measured[8] - 8 * per_sample  # per step: the masked weights
    assert abs(rule_per_sample / per_sample - 1) < 0.01, (rule_per_sample, per_sample)


def test_eight_bit_states_match_bitsandbytes():
    cfg = full_preset("tiny")
    batch = synthetic_batch(cfg, batch_size=2, seq_len=32)
    plan = memory.Plan(precision="fp32", optimizer="adamw8bit")
    meas = memory.measure(build_model(cfg, seed=0), batch, plan)
    est = memory.estimate(cfg, plan, memory.BatchShape(2, 32))
    assert est.device["optimizer"] == pytest.approx(meas.device["optimizer"], rel=0.01)


def test_full_17b_estimate_is_fast_and_allocates_nothing():
    import resource

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    est = memory.estimate(full_preset("seeds_full", activation_checkpointing=True), memory.SEEDS_PLAN,
                          memory.SEEDS_BATCH, memory.hardware_from("RTX A5000", 2, 24.0, 64.0))
    assert time.perf_counter() - t0 < 10
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024 < 1e9  # far below 17B weights
    assert est.parameters["total"] > 16e9
    # FSDP2 + full offload: states leave the GPUs for host RAM
    assert est.device["parameters"] == 0 and est.host["params_grads_optimizer_offload"] > 150e9


def test_plans_for_the_seeds_on_two_a5000():
    hw = memory.hardware_from("RTX A5000", 2, 24.0, 64.0)
    verdicts = memory.plans(full_preset("seeds_full"), hw, memory.SEEDS_BATCH)
    fitting = [v for v in verdicts if v.fits]
    assert fitting, "at least one plan must fit (QLoRA / offload)"
    assert all(v.estimate.device_total <= 0.9 * 24e9 and v.estimate.host_total <= 0.85 * 64e9 for v in fitting)
    assert all(v.reasons for v in verdicts if not v.fits)
    times = [v.time.step_s for v in fitting]
    assert times == sorted(times)
    # the seeds' own plan: per-device fine, host RAM not
    seeds = memory.estimate(full_preset("seeds_full", activation_checkpointing=True), memory.SEEDS_PLAN,
                            memory.SEEDS_BATCH, hw)
    assert any("host" in r for r in memory.check_fit(seeds, hw))


def test_upper_bound_for_the_seeds_target():
    bound = memory.transformer_upper_bound_steps_per_s(16.93e9, 32 * 512, 2, 111e12)
    assert bound == pytest.approx(2 * 111e12 / (6 * 16.93e9 * 32 * 512))
    assert bound < 0.14


def test_preflight_refuses_with_alternatives():
    hw = memory.hardware_from("RTX A5000", 1, 24.0, 64.0)
    with pytest.raises(memory.MemoryBudgetError, match="does not fit 1 x RTX A5000.*Plans that fit"):
        memory.preflight(full_preset("seeds_full"), memory.Plan(precision="bf16-mixed", optimizer="adamw"),
                         memory.BatchShape(1, 512, 1), hw)
    est = memory.preflight(full_preset("tiny"), memory.Plan(precision="bf16-mixed"), memory.BatchShape(2, 64), hw)
    assert est.device_total < 1e9


def test_plan_validation():
    with pytest.raises(ValueError, match="needs sharding=fsdp2"):
        memory.Plan(cpu_offload="params_optimizer")
    with pytest.raises(ValueError, match="gpu_name='TPU'"):
        memory.hardware_from("TPU", 1, 16, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for max_memory_allocated")
def test_cuda_measurement_reports_allocator_peaks():
    cfg = full_preset("tiny")
    model = build_model(cfg, seed=0).cuda()
    batch = {k: (v.cuda() if hasattr(v, "cuda") else v) for k, v in synthetic_batch(cfg).items()}
    meas = memory.measure(model, batch, memory.Plan(precision="bf16-mixed"))
    assert meas.device["max_memory_allocated"] > meas.device["parameters"]


def test_recommendations_name_only_plans_the_trainer_can_run():
    """Issue 15: the verdict recommended a QLoRA plan the trainer refuses, and showed None step times."""
    batch = memory.BatchShape(4, 256, 4)
    cpu = memory.hardware_from("cpu", 1, None, 24.0)
    verdicts = memory.plans(full_preset("tiny"), cpu, batch)
    rows = [v.row(cpu) for v in verdicts]
    assert all(r["step_s"] == "n/a on CPU" for r in rows)
    first_waiting = next(i for i, v in enumerate(verdicts) if not v.runnable)
    assert all(v.runnable for v in verdicts[:first_waiting] if v.fits)  # runnable fitting plans come first
    assert all("not runnable" in r["why_not"] for r, v in zip(rows, verdicts, strict=True) if not v.runnable)
    # on a CPU a configured plan that fits is kept: a smaller one (bf16 autocast) would only be slower there
    text = memory.recommend(verdicts, memory.Plan(precision="fp32", optimizer="adamw"), cpu)
    assert text.startswith("keep the configured plan 'fp32 adamw'") and "slower than fp32" in text
    # one that is not among the CPU's plans (pure bf16): the smallest runnable one is named instead
    text = memory.recommend(verdicts, memory.Plan(precision="bf16", optimizer="adamw"), cpu)
    assert "lora" not in text.split("(")[0] and "smallest" in text and "precision: bf16 → " in text

    pod = memory.hardware_from("RTX A5000", 2, 24.0, 64.0)
    configured = memory.Plan(precision="bf16-mixed", optimizer="adamw8bit", sharding="ddp", world_size=2)
    verdicts = memory.plans(full_preset("small"), pod, memory.BatchShape(16, 256, 2))
    best = next(v for v in verdicts if v.fits and v.runnable)
    text = memory.recommend(verdicts, configured, pod)
    assert f"'{best.estimate.plan.name}'" in text and "s/step" in text
    mine = next(v for v in verdicts if v.estimate.plan.name == configured.name)
    if mine.time.step_s <= 1.05 * best.time.step_s:  # a tie within the estimate's accuracy: keep it
        assert text.startswith(f"keep the configured plan '{configured.name}'")
    else:  # a different plan is explained, with both costs
        assert "differing in" in text and f"the configured '{configured.name}' fits" in text
    slow = memory.Plan(precision="bf16-mixed", optimizer="adamw", activation_checkpointing=True, sharding="fsdp2",
                       world_size=2, cpu_offload="params_optimizer")
    slow_v = next(v for v in verdicts if v.estimate.plan.name == slow.name)
    if slow_v.time.step_s > 1.05 * best.time.step_s:
        assert "differing in" in memory.recommend(verdicts, slow, pod)
    none_fit = memory.plans(full_preset("seeds_full"), memory.hardware_from("RTX A5000", 1, 24.0, 32.0),
                            memory.SEEDS_BATCH)
    assert memory.recommend(none_fit, configured, pod).startswith("no plan the trainer can run fits")
