import pytest
import torch

from astrobio_lib import tracking
from astrobio_lib.optim import build_optimizer, build_scheduler, param_groups
from astrobio_lib.train import checkpoint as ckpt


def test_memory_alerts_are_per_device():
    stats = {"cpu_rss_peak_gb": 3.0, "gpu0_peak_gb": 22.0, "gpu0_peak_fraction": 0.92,
             "gpu1_peak_gb": 20.0, "gpu1_peak_fraction": 0.83}
    alerts = tracking.memory_alerts(stats, 0.9)
    assert len(alerts) == 1 and alerts[0].startswith("gpu0 peak 22.00 GB = 92%")


def test_no_weight_decay_on_norms_and_biases():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 4  # two biases, LayerNorm weight and bias
    with pytest.raises(RuntimeError, match="paged_adamw8bit"):
        build_optimizer(model, "paged_adamw8bit", 1e-3)


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, "cosine", max_steps=110, warmup_steps=10)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_sharded_checkpoint_directories_are_pruned_like_files(tmp_path):
    for step in range(1, 5):
        d = tmp_path / f"step_{step:08d}.dcp"
        d.mkdir()
        (d / "rank_0.pt").write_bytes(b"x")
        ckpt.record(tmp_path, d.name, step, keep=2, best=step == 1, sharded=True)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [
        "step_00000001.dcp", "step_00000003.dcp", "step_00000004.dcp"]
    assert all(e["sharded"] for e in ckpt.read_manifest(tmp_path))


def test_attention_auto_takes_sdpa_without_cuda_or_flash_attn(monkeypatch):
    """Throughput issue: flash-attn is used automatically when installed on CUDA in 16 bit, SDPA
    otherwise; the reason is reported."""
    import sys

    import torch

    from astrobio_lib.models import adapters

    assert adapters.resolve_attention("eager", "fp32") == ("eager", "as configured")
    if not torch.cuda.is_available():
        assert adapters.resolve_attention("auto", "bf16-mixed") == ("sdpa", "auto: no CUDA GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert adapters.resolve_attention("auto", "fp32")[0] == "sdpa"
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # import fails: not installed
    backend, why = adapters.resolve_attention("auto", "bf16-mixed")
    assert backend == "sdpa" and "not installed" in why
    monkeypatch.setitem(sys.modules, "flash_attn", type("M", (), {"__version__": "2.8.3"})())
    assert adapters.resolve_attention("auto", "bf16-mixed") == ("flash_attn", "auto: flash-attn 2.8.3 installed, CUDA, bf16-mixed")
    assert adapters.model_config({"model_preset": "tiny", "attention": "auto", "precision": "bf16-mixed"}).llm.attention == "flash_attn"
