"""LoRA / QLoRA fine-tuning of the multimodal model with a pretrained (tiny, random) Llama on CPU
(issue 12): the loss falls, the base is bitwise unchanged, only adapters/encoders/heads train,
checkpoints hold only those, resume after SIGKILL is exact, and evaluation loads base + adapters."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from astrobio_lib.models import pretrained  # noqa: E402
from astrobio_lib.train import checkpoint as ckpt  # noqa: E402

from ..conftest import built  # noqa: E402
from .test_training import losses, params, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    """A 3.3M-parameter random Llama: large beside the tiny preset's encoders, so a checkpoint
    without it is visibly smaller."""
    return pretrained.make_tiny_checkpoint(tmp_path_factory.mktemp("base") / "llama", hidden=256, layers=4,
                                           intermediate=688)


def lora_params(run: Path, catalog: Path, llama: Path, adapter: str, **kw) -> dict:
    values = dict(llm_checkpoint=str(llama), llm_adapter=adapter, lora_rank=4, text_max_len=96, micro_batch_size=4,
                  grad_accum_steps=2, learning_rate=1e-3, checkpoint_every_steps=10)
    return params(run, catalog, **{**values, **kw})


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_adapters_train_and_leave_the_base_untouched(tmp_path, real_catalog, llama, adapter):
    from astrobio_lib import evaluate
    from astrobio_lib.train import distributed, loop
    from astrobio_lib.train.preemption import Preemption

    run = tmp_path / "run"
    cfg = built(lora_params(run, real_catalog, llama, adapter, max_steps=30))
    s = loop.setup(cfg, distributed.init(cfg.train.sharding))
    model = s.state.model
    frozen = model.frozen_state_keys
    base = {k: v.detach().clone() for k, v in model.state_dict().items() if k in frozen}
    assert any(k.endswith("q_proj.base_layer.weight") for k in base)
    named = dict(model.named_parameters())
    in_optimizer = {id(p) for g in s.state.optimizer.param_groups for p in g["params"]}
    trained = {n for n, p in named.items() if id(p) in in_optimizer}
    assert trained == {n for n, p in named.items() if p.requires_grad}
    assert all("lora_" in n or not n.startswith("text_encoder.") for n in trained), trained
    assert sum("lora_" in n for n in trained) == 4 * 7 * 2  # 4 blocks x 7 targets x (A, B)
    if adapter == "qlora":
        import bitsandbytes as bnb

        assert isinstance(model.text_encoder.blocks[0].mlp.down.base_layer, bnb.nn.Linear4bit)
    with Preemption() as preempt:
        result = loop.run_loop(s, preempt)
    s.checkpointer.close()
    assert result.step == 30
    after = model.state_dict()
    changed = [k for k, v in base.items() if not torch.equal(v, after[k])]
    assert not changed, changed  # every base weight (and 4-bit quantisation state) bitwise unchanged
    curve = losses(run)
    first, last = sum(curve[i] for i in range(1, 6)) / 5, sum(curve[i] for i in range(26, 31)) / 5
    assert last < first, (first, last)
    newest = run / "checkpoints" / "step_00000030.pt"
    payload = ckpt.load_file(newest)
    assert not set(payload["model"]) & frozen and payload["config"]["llm_base_sha256"]
    base_bytes = sum(f.stat().st_size for f in pretrained.weight_files(llama))
    assert newest.stat().st_size < 0.5 * base_bytes, (newest.stat().st_size, base_bytes)
    # evaluation rebuilds base + adapters from the checkpoint's configuration
    model_eval, flat, path = evaluate.load_model(run, which="newest")
    assert flat["llm_adapter"] == adapter and path == newest
    got = model_eval.state_dict()
    for k, v in payload["model"].items():
        assert torch.equal(got[k].float(), v.float()), k


@pytest.mark.slow
def test_qlora_resume_after_sigkill_is_exact_and_another_base_is_refused(tmp_path, real_catalog, llama):
    import shutil

    steps = 16
    ref = run_cli(lora_params(tmp_path / "ref", real_catalog, llama, "qlora", max_steps=steps,
                              checkpoint_every_steps=4), tmp_path, "ref")
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-3000:]
    p = lora_params(tmp_path / "run", real_catalog, llama, "qlora", max_steps=steps, checkpoint_every_steps=4)
    proc = run_cli(p, tmp_path, "run")
    kill_at = random.Random(os.getpid()).randint(5, 11)
    deadline = time.time() + 600
    while time.time() < deadline:
        if (tmp_path / "run" / "metrics.jsonl").exists() and max(losses(tmp_path / "run"), default=0) >= kill_at:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(losses(tmp_path / "run")) < steps, "the run finished before it could be killed"
    again = run_cli(p, tmp_path, "run")
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "resumed from" in out, out[-3000:]
    assert losses(tmp_path / "run") == losses(tmp_path / "ref")

    # the same run folder against a different base checkpoint: refused, naming the base
    other = Path(shutil.copytree(llama, tmp_path / "other_llama"))
    (other / "SYNTHETIC_RANDOM_WEIGHTS.txt").unlink()
    from safetensors.torch import load_file, save_file

    shard = pretrained.weight_files(other)[0]
    tensors = load_file(str(shard))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(shard), metadata={"format": "pt"})
    swapped = run_cli({**p, "llm_checkpoint": str(other), "max_steps": steps + 4}, tmp_path, "swapped")
    out = swapped.communicate(timeout=600)[0]
    assert swapped.returncode == 2 and "llm_base_sha256" in out, out[-3000:]


@pytest.mark.slow
def test_pipeline_end_to_end_with_smoke_lora_params(tmp_path):
    """params/smoke_lora.yaml through all five notebooks, with the tiny checkpoint made by the
    documented helper command."""
    import json
    import subprocess
    import sys

    from ..conftest import REPO

    made = subprocess.run([sys.executable, "-m", "astrobio_lib.models.pretrained", "make-tiny",
                           str(tmp_path / "tiny_llama")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", "params/smoke_lora.yaml", "--outputs",
                          str(tmp_path / "out"), "-p", f"llm_checkpoint={tmp_path / 'tiny_llama'}",
                          "-p", "max_steps=12", "-p", "bootstrap_samples=20"],
                         cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "out" / "smoke_lora"
    result = json.loads((run / "train_result.json").read_text()) if (run / "train_result.json").exists() else None
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["n_test_planets"] > 0
    log = (run / "run.log").read_text()
    assert "lora on" in log and "trainable parameters" in log
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["modalities"]["text"]["tokenizer"] == "tokenizer.json of tiny_llama"
    assert result is None or result["step"] == 12


@pytest.mark.slow
def test_memory_budget_notebook_shows_the_qlora_13b_plan_fits_the_pod(tmp_path):
    import json
    import subprocess
    import sys

    import nbformat

    from ..conftest import REPO

    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", "params/runpod_2xa5000_qlora13b.yaml",
                          "--outputs", str(tmp_path), "--only", "02"], cwd=REPO, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "runpod_2xa5000_qlora13b"
    verdict = json.loads((run / "memory_budget.json").read_text())["verdict"]
    assert verdict["fits"] is True and verdict["params_plan"] == "bf16-mixed adamw8bit ckpt ddpx2 qlora-r16"
    assert 5 < verdict["per_device_GB"] < 0.9 * 24 and verdict["step_s"] > 0
    nb = nbformat.read(run / "02_memory_budget.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "published config.json of Llama-2-13b-hf" in text and "100000 steps = " in text


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_adapter_memory_estimate_against_a_measured_step(llama, adapter, precision, checkpointing):
    """The budget for LoRA/QLoRA (frozen base in the compute dtype or NF4, peft's per-adapter
    inputs) against one real step on CPU: states + stored activations, never more than 5% under."""
    from astrobio_lib import memory, tasks
    from astrobio_lib.models.synthetic import synthetic_batch

    flat = dict(task="habitability", model_preset="tiny", llm_checkpoint=str(llama), llm_adapter=adapter, seed=0,
                precision=precision,
                lora_rank=8, lora_dropout=0.05, activation_checkpointing=checkpointing)
    model, cfg = tasks.build_model(flat), tasks.model_config(flat)
    batch = synthetic_batch(cfg, batch_size=4, seq_len=96)
    plan = memory.Plan(precision=precision, optimizer="adamw", llm_adapter=adapter, lora_rank=8, lora_dropout=0.05,
                       activation_checkpointing=checkpointing)
    measured = memory.measure(model, batch, plan)
    est = memory.estimate(cfg, plan, memory.BatchShape(4, 96, 1, batch["graph"].num_nodes // 4,
                                                       batch["graph"].edge_index.shape[1] // 4))
    assert abs(est.device["parameters"] / measured.device["parameters"] - 1) < 0.03  # frozen base bytes
    error = est.measured_comparable / measured.comparable - 1
    assert -0.05 <= error <= 0.25, f"{100 * error:.1f}%"
