"""Issue 11: the estimator's CUDA peak model against allocator peaks measured on an H100, the rules
it is built from (attention kernel, autocast cast cache, step phases) checked on CPU, and the
measured probe's depth extrapolation against a full measurement."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from astrobio_lib import memory
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.synthetic import synthetic_batch

from .conftest import full_preset

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "measurements" / "h100_memory_2026-11-23.json"
COPY = REPO / "tests" / "data" / "measurements" / "h100_memory_2026-11-23.json"
H100 = memory.Hardware(memory.DEVICES["H100 SXM"])


def _measurements() -> dict:
    data = json.loads(COPY.read_text())
    if SHARED.is_file():  # the copy must be the shared file, not an edited one
        assert json.loads(SHARED.read_text()) == data, f"{COPY} differs from {SHARED}"
    return data


def _preset(name: str):
    cfg = full_preset("small" if name == "small" else "medium")
    if name == "medium":  # the file's recipe is our medium preset
        small = full_preset("small")
        assert cfg.llm == dataclasses.replace(small.llm, hidden=2048, n_layers=16, n_heads=16, n_kv_heads=4,
                                              intermediate=5504, max_seq_len=1024)
    return cfg


def _added_since_measured(cfg) -> int:
    """Parameters added after the H100 measurement (issue 14): the spectrum encoder's projection from
    16 pooled positions instead of 1 — ~61k parameters, 0.07% of small and 0.01% of medium, far below
    the tolerances here (the gas heads of issue 14 belong to the gas-detection task's model since)."""
    from astrobio_lib.models.fusion import SPECTRUM_POSITIONS

    d, c = cfg.fusion.d_model, cfg.fusion.spectrum_channels
    return c * (SPECTRUM_POSITIONS - 1) * d


@pytest.mark.parametrize("row", _measurements()["rows"], ids=lambda r: f"{r['preset']}-{r['precision']}-"
                         f"{r['optimizer']}-ckpt{int(r['ckpt'])}-mb{r['mb']}-s{r['seq']}")
def test_h100_allocator_peaks_within_10_percent_and_never_5_under(row):
    cfg = _preset(row["preset"])
    plan = memory.Plan(precision=row["precision"], optimizer=row["optimizer"], activation_checkpointing=row["ckpt"])
    est = memory.estimate(cfg, plan, memory.BatchShape(row["mb"], row["seq"], 1), H100)
    assert est.parameters["total"] == row["params"] + _added_since_measured(cfg)
    err = est.peak_allocated / (row["peak_alloc_gb"] * 1e9) - 1
    assert -0.05 <= err <= 0.10, f"peak allocated {est.peak_allocated / 1e9:.3f} GB vs measured " \
                                 f"{row['peak_alloc_gb']} GB: {100 * err:+.1f}% (phase {est.peak_phase})"
    # reserved = allocated + a 10% fragmentation allowance: stated, not fitted; measured 2-18% over
    err_reserved = est.peak_reserved / (row["peak_reserved_gb"] * 1e9) - 1
    assert -0.10 <= err_reserved <= 0.15, f"reserved {100 * err_reserved:+.1f}%"
    assert est.device_total == pytest.approx(est.peak_reserved + memory.CUDA_CONTEXT_BYTES)


def test_attention_kernel_follows_sdpa_dispatch():
    small = full_preset("small")  # 12 heads, 4 key/value heads (GQA), head_dim 64
    assert memory.attention_kernel(small, memory.Plan(precision="fp32"), cuda=True) == "math"
    assert memory.attention_kernel(small, memory.Plan(precision="bf16-mixed"), cuda=True) == "fused"
    assert memory.attention_kernel(small, memory.Plan(precision="fp32"), cuda=False) == "fused"  # CPU flash takes fp32
    mha = dataclasses.replace(small, llm=dataclasses.replace(small.llm, n_kv_heads=12))
    assert memory.attention_kernel(mha, memory.Plan(precision="fp32"), cuda=True) == "fused"  # memory-efficient
    assert memory.attention_kernel(small, memory.Plan(precision="fp32", attention="eager"), cuda=True) == "eager"
    # the math path stores the softmax output: a*s per token per layer more than the fused kernel
    fused, math_ = (memory.activation_bytes(small, memory.Plan(precision="fp32"), memory.BatchShape(2, 128), cuda)[0]["llm"]
                    for cuda in (False, True))
    c = small.llm
    per_token = c.n_heads * 128 + 2 * c.hidden - 2 * c.n_kv_heads * c.head_dim - c.n_heads
    assert math_ - fused == pytest.approx(c.n_layers * 2 * 128 * per_token * 4)


def test_cast_parameters_count_every_matmul_weight_once():
    cfg = full_preset("tiny")
    cast = memory.cast_parameters(cfg)
    c = cfg.llm
    block = (c.hidden * c.n_heads * c.head_dim * 2 + 2 * c.hidden * c.n_kv_heads * c.head_dim
             + 3 * c.hidden * c.intermediate)
    assert cast["llm_blocks"] == c.n_layers * block
    total = sum(p.numel() for p in build_model(cfg, device="meta").parameters())
    embed = c.vocab_size * c.hidden
    assert 0 < sum(cast.values()) < total - embed  # embeddings, norms, attention vectors are not cast


def test_autocast_cache_is_what_cpu_autocast_saves_for_the_llm():
    """CPU autocast casts the same ops: the LLM's saved bytes under bf16-mixed are its 16-bit
    activations plus the 16-bit copies of its block and lm_head weights."""
    cfg = full_preset("tiny")
    cfg.llm = dataclasses.replace(cfg.llm, hidden=128, n_layers=3, intermediate=256)
    b, s = 2, 64
    batch = synthetic_batch(cfg, batch_size=b, seq_len=s, seed=0, nodes_per_graph=12)
    plan = memory.Plan(precision="bf16-mixed", optimizer="adamw")
    meas = memory.measure(build_model(cfg, seed=0), batch, plan)
    est = memory.estimate(cfg, plan, memory.BatchShape(b, s, 1, 12, batch["graph"].edge_index.shape[1] // b))
    c = cfg.llm
    casts = 2 * (memory.cast_parameters(cfg)["llm_blocks"] + c.hidden * c.vocab_size)  # + lm_head
    err = (est.activations_by_component["llm"] + casts) / meas.activations_by_component["llm"] - 1
    assert abs(err) < 0.05, f"{100 * err:+.1f}%"  # -1.4%: the RoPE tables cast per layer are not counted


def test_step_phases_follow_the_step():
    cfg, hw = full_preset("medium"), H100
    plan = memory.Plan(precision="bf16-mixed", optimizer="adamw")
    one = memory.estimate(cfg, plan, memory.BatchShape(4, 512, 1), hw)
    accum = memory.estimate(cfg, plan, memory.BatchShape(4, 512, 4), hw)
    # from the second micro-batch on, the gradients exist during forward
    assert one.phases["backward start"]["gradients"] == 0
    assert accum.phases["backward start"]["gradients"] == accum.device["gradients"] > 0
    assert accum.peak_allocated > one.peak_allocated
    # checkpointing: few activations at backward start; the peak moves to the end of the LLM's backward
    ckpt = memory.estimate(full_preset("medium", activation_checkpointing=True),
                           dataclasses.replace(plan, activation_checkpointing=True), memory.BatchShape(8, 512, 1), hw)
    assert ckpt.peak_phase == "end of LLM backward"
    # fused AdamW and 8-bit kernels have no step temporaries on CUDA; the unfused CPU AdamW does
    assert one.phases["optimizer step"]["optimizer_step_temporaries"] == 0
    cpu = memory.estimate(full_preset("tiny"), memory.Plan(precision="fp32", optimizer="adamw"), memory.BatchShape(2, 64))
    assert cpu.phases["optimizer step"]["optimizer_step_temporaries"] > 0 and not cpu.overheads


def test_fit_verdict_names_the_dominant_term_and_the_remedy():
    hw = memory.hardware_from("RTX A5000", 1, 24.0, 64.0)
    est = memory.estimate(full_preset("medium"), memory.Plan(precision="bf16-mixed", optimizer="adamw"),
                          memory.BatchShape(32, 1024, 1), hw)
    reasons = memory.check_fit(est, hw)
    assert reasons and "peak reserved + CUDA context" in reasons[0]
    term, value, shrink = est.dominant()
    assert term == "activations" and f"largest term {term}" in reasons[0] and "checkpointing" in shrink


def test_probe_depth_extrapolation_matches_a_full_measurement():
    """Depth-reduced copies (every stack at 1, each stack at 2) extrapolated to 6 LLM blocks, 3 ViT,
    3 GATv2 and 3 fusion layers vs one real step of that full model (CPU: states + saved tensors)."""
    cfg = memory.depth_reduced(full_preset("tiny", activation_checkpointing=False),
                               {"llm": 6, "datacube_vit": 3, "graph": 3, "fusion": 3})
    batch = synthetic_batch(cfg, batch_size=3, seq_len=64, seed=0, nodes_per_graph=12)
    plan = memory.Plan(precision="fp32", optimizer="adamw")
    result = memory.probe(cfg, plan, batch, device="cpu")
    assert len(result.runs) == 5 and all(max(r["depths"].values()) <= 2 for r in result.runs)
    full = memory.measure(build_model(cfg, seed=0), batch, plan)
    for key in ("parameters", "gradients", "optimizer", "activations"):
        assert result.extrapolated[key] == pytest.approx(full.device[key], rel=0.05), key
    assert result.comparable == pytest.approx(full.comparable, rel=0.05)
    assert result.peak_allocated is None  # no allocator peak on CPU
    assert len(result.table()) == 6


def test_probe_refuses_plans_it_cannot_build():
    cfg = full_preset("tiny")
    batch = synthetic_batch(cfg, batch_size=2, seq_len=32)
    with pytest.raises(ValueError, match="use memory.estimate"):
        memory.probe(cfg, memory.Plan(llm_adapter="qlora"), batch, device="cpu")


def test_probe_preflight_refuses_a_plan_the_probe_says_does_not_fit(monkeypatch, tmp_path):
    """The trainer's GPU preflight decision, with the probe and the device's size stubbed (no GPU here)."""
    from astrobio_lib import config
    from astrobio_lib.train import loop

    cfg = config.from_mapping(config.load_yaml(REPO / "params" / "smoke.yaml"))
    fake = memory.ProbeResult("FakeGPU", {}, [{"depths": {}}],
                              {"forward_backward_peak": 30e9, "optimizer_step_peak": 1e9, "peak_reserved": 31e9})
    monkeypatch.setattr(memory, "probe", lambda *a, **k: fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: type("P", (), {"total_memory": 24e9})())

    class DS:
        graphs = None

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {}

    from astrobio_lib.tasks import TaskData

    data = TaskData(DS(), DS(), lambda items: {}, key="k")
    plan, shape = loop.plan_for(cfg, 1), memory.BatchShape(4, 64)
    with pytest.raises(memory.MemoryBudgetError, match="memory probe on FakeGPU.*needs 31.6"):
        loop.probe_preflight(cfg, full_preset("tiny"), plan, shape, data, torch.device("cpu"))
    fake.extrapolated["peak_reserved"] = 2e9
    assert loop.probe_preflight(cfg, full_preset("tiny"), plan, shape, data, torch.device("cpu")) is fake


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for allocator peaks")
def test_cuda_probe_matches_a_full_step_within_10_percent():
    cfg = memory.depth_reduced(full_preset("tiny"), {"llm": 4})
    batch = synthetic_batch(cfg, batch_size=4, seq_len=128, seed=0, nodes_per_graph=12)
    plan = memory.Plan(precision="bf16-mixed", optimizer="adamw")
    result = memory.probe(cfg, plan, batch, device="cuda")
    full = memory.measure_step_peak(cfg, plan, batch)
    assert result.peak_allocated == pytest.approx(full["peak_allocated"], rel=0.10)
