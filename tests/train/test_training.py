import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from astrobio_lib import config
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train.loop import DatasetNotBuilt, accumulate, train

from ..conftest import HABITABILITY, REPO, built, full_preset

FAST = dict(**HABITABILITY, n_planets=64, label_mc_samples=16, micro_batch_size=2, grad_accum_steps=2, val_every_steps=4,
            checkpoint_every_steps=4, log_every_steps=4, memory_every_steps=8, wandb_mode="disabled",
            warmup_steps=2, gas_planets=0)


def params(run_dir: Path, catalog: Path, **kw) -> dict:
    return {"run_dir": str(run_dir), "catalog_path": str(catalog), **FAST, **kw}


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def run_cli(p: dict, tmp: Path, name: str, env=None):
    built(p)  # notebook 01's part: the trainer reads a built dataset
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(p))
    return subprocess.Popen([sys.executable, "-m", "astrobio_lib.train", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.mark.slow
def test_smoke_run_trains_and_loss_goes_down(tmp_path, real_catalog):
    """Training issue, done-when 1: >= 100 steps with accumulation >= 4 on CPU."""
    cfg = built(params(tmp_path / "run", real_catalog, micro_batch_size=4, grad_accum_steps=4,
                                     max_steps=100, checkpoint_every_steps=25, val_every_steps=25,
                                     log_every_steps=10, n_planets=256))
    result = train(cfg)
    assert result.step == 100 and result.stopped_because == "max_steps"
    curve = losses(tmp_path / "run")
    first = sum(curve[s] for s in range(1, 11)) / 10
    last = sum(curve[s] for s in range(91, 101)) / 10
    assert last < first, (first, last)
    assert (tmp_path / "run" / "checkpoints" / "step_00000100.pt").exists()
    assert len(result.checkpoints) >= 2


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_the_uninterrupted_run(tmp_path, real_catalog):
    """Training issue, done-when 2: the joined trajectory equals an uninterrupted run exactly,
    and every training sample is seen exactly once per epoch."""
    steps = 20
    ref = run_cli(params(tmp_path / "ref", real_catalog, max_steps=steps), tmp_path, "ref")
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-3000:]
    kill_at = random.Random(os.getpid()).randint(6, 15)
    p = params(tmp_path / "run", real_catalog, max_steps=steps)
    proc = run_cli(p, tmp_path, "run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        if metrics.exists() and max(losses(tmp_path / "run"), default=0) >= kill_at:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(losses(tmp_path / "run"))
    assert killed_at < steps, "the run finished before it could be killed"
    again = run_cli(p, tmp_path, "run")
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out[-3000:]
    assert "resumed from" in out
    ref_curve, joined = losses(tmp_path / "ref"), losses(tmp_path / "run")
    assert sorted(joined) == list(range(1, steps + 1))
    assert joined == ref_curve, {s: (joined[s], ref_curve[s]) for s in joined if joined[s] != ref_curve[s]}
    # exactly once per epoch: replay the order the run used, across the kill
    from astrobio_lib.data.loader import PlanetDataset
    from astrobio_lib.train.data_order import ResumableOrder

    n = len(PlanetDataset(tmp_path / "run" / "data", "train"))
    order = ResumableOrder(n, FAST["micro_batch_size"], 0)
    seen = [i for idx, epoch in order.epochs(3) if epoch == 0 for i in idx]
    assert sorted(seen) == list(range(n))


@pytest.mark.slow
def test_truncated_newest_checkpoint_falls_back_with_a_log_line(tmp_path, real_catalog):
    """Training issue, done-when 3."""
    run = tmp_path / "run"
    train(built(params(run, real_catalog, max_steps=8)))
    newest = run / "checkpoints" / "step_00000008.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    result = train(built(params(run, real_catalog, max_steps=10)))
    assert result.resumed_from.endswith("step_00000004.pt") and result.step == 10
    log_text = (run / "run.log").read_text()
    assert "step_00000008.pt is sha256 mismatch" in log_text and "falling back to the previous one, step_00000004.pt" in log_text


@pytest.mark.slow
def test_resuming_with_another_configuration_is_refused(tmp_path, real_catalog):
    run = tmp_path / "run"
    train(built(params(run, real_catalog, max_steps=4)))
    with pytest.raises(ckpt.CheckpointError, match="micro_batch_size: 2 -> 3"):
        train(built(params(run, real_catalog, max_steps=8, micro_batch_size=3)))
    again = train(built(params(run, real_catalog, max_steps=4)))
    assert again.start_step == 4 and again.step == 4  # already done: nothing to do


def test_accumulation_equals_one_big_batch():
    """Training issue, done-when 5: k x micro-batch m gives the gradients of one batch of k*m (fp32)."""
    from astrobio_lib.models.fusion import build_model
    from astrobio_lib.models.synthetic import synthetic_batch

    cfg = full_preset("tiny")
    cfg.heads.loss_weights["reconstruction"] = 0.0  # negative sampling is random by design
    big = synthetic_batch(cfg, batch_size=8, seq_len=32, seed=3)
    k, m = 4, 2

    def part(i):
        out = {}
        for key, v in big.items():
            if key == "graph":
                out[key] = type(v).from_data_list(v.to_data_list()[i * m:(i + 1) * m])
            elif torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 8:
                out[key] = v[i * m:(i + 1) * m]
            else:
                out[key] = v
        return out

    grads = []
    for batches in ([big], [part(i) for i in range(k)]):
        model = build_model(cfg, seed=0).eval()  # eval: no reparameterisation noise
        accumulate(model, batches, torch.device("cpu"), "fp32")
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_then_the_run_stops_with_a_checkpoint(tmp_path, real_catalog, monkeypatch):
    from astrobio_lib.train import loop

    real_build = loop.adapters.build

    def poisoned(*a, **k):
        model = real_build(*a, **k)
        model.register_forward_hook(lambda mod, inp, out: {**out, "loss": out["loss"] * float("nan")})
        return model

    monkeypatch.setattr(loop.adapters, "build", poisoned)
    result = train(built(params(tmp_path / "run", real_catalog, max_steps=10, nan_patience=3)))
    assert result.stopped_because == "non_finite" and result.skipped_steps == 3 and result.step == 3
    assert (tmp_path / "run" / "checkpoints" / "step_00000003.pt").exists()
    assert "3 consecutive non-finite steps" in (tmp_path / "run" / "run.log").read_text()


@pytest.mark.slow
def test_no_secret_in_outputs(tmp_path, real_catalog):
    """Training issue, done-when 6: a fake WANDB_API_KEY never lands in notebooks, logs, metrics
    or checkpoints (W&B offline)."""
    secret = "wandb-fake-key-0123456789abcdef-do-not-leak"
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"catalog_path": str(real_catalog), **{k: v for k, v in FAST.items()},
                                 "max_steps": 6, "wandb_mode": "offline", "min_free_disk_gb": 0.001}))
    env = {**os.environ, "WANDB_API_KEY": secret, "WANDB_MODE": "offline"}
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", str(p), "--outputs", str(tmp_path / "out"),
                          "--only", "00", "01", "03"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert any(f.suffix == ".pt" for f in files) and any(f.name == "metrics.jsonl" for f in files)
    leaked = [str(f) for f in files if secret.encode() in f.read_bytes()]
    assert not leaked, leaked
    assert secret not in res.stdout + res.stderr


@pytest.fixture(scope="module")
def reference_curve(tmp_path_factory, real_catalog):
    """An uninterrupted 20-step run that interrupted runs must reproduce exactly."""
    tmp = tmp_path_factory.mktemp("reference")
    ref = run_cli(params(tmp / "ref", real_catalog, max_steps=20, checkpoint_every_steps=100), tmp, "ref")
    out = ref.communicate(timeout=600)[0]
    assert ref.returncode == 0, out[-3000:]
    return losses(tmp / "ref")


def wait_for_step(run_dir: Path, step: int, proc, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "metrics.jsonl").exists() and max(losses(run_dir), default=0) >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_the_rerun_continues_exactly(tmp_path, real_catalog,
                                                                              reference_curve):
    """Trainer-core issue: SIGTERM with no periodic checkpoint due → checkpoint at the current step,
    exit 75, and the rerun loses at most one step and reproduces the uninterrupted losses."""
    from astrobio_lib.train.preemption import INTERRUPTED_EXIT

    p = params(tmp_path / "run", real_catalog, max_steps=20, checkpoint_every_steps=100)
    proc = run_cli(p, tmp_path, "run")
    wait_for_step(tmp_path / "run", 4, proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == INTERRUPTED_EXIT, out[-3000:]
    result = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert result["stopped_because"] == "interrupted" and result["interrupted_by"] == "SIGTERM"
    stopped_at = result["step"]
    assert stopped_at < 20 and max(losses(tmp_path / "run")) == stopped_at
    assert result["last_checkpoint"].endswith(f"step_{stopped_at:08d}.pt")
    assert f"finished step {stopped_at}, checkpoint" in out
    again = run_cli(p, tmp_path, "run")
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out[-3000:]
    assert f"resumed from {tmp_path / 'run' / 'checkpoints' / f'step_{stopped_at:08d}.pt'}" in out
    assert losses(tmp_path / "run") == reference_curve


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_valid(tmp_path):
    """SIGTERM (no handler installed: the default action) while a checkpoint is being written."""
    script = tmp_path / "writer.py"
    script.write_text(f"""
import sys, time, torch
sys.path.insert(0, {str(REPO)!r})
from tests.train.test_checkpointer import make_state, step
from astrobio_lib.train import checkpoint as ckpt
state = make_state()
cp = ckpt.Checkpointer({str(tmp_path / 'ck')!r}, keep=3)
step(state); cp.save(state)
real = torch.save
def slow(obj, f, *a, **k):
    f.write(b"partial" * 1000); f.flush()
    print("writing", flush=True)
    time.sleep(60)
torch.save = slow
step(state); cp.save(state)
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    ck = tmp_path / "ck"
    assert any(p.name.endswith(".tmp") for p in ck.iterdir()), "the kill happened mid-write"
    from .test_checkpointer import make_state

    fresh = make_state(seed=9)
    cp = ckpt.Checkpointer(ck, keep=3)  # removes the dead writer's temporary file
    assert cp.load(fresh).endswith("step_00000001.pt") and fresh.step == 1
    assert not any(p.name.endswith(".tmp") for p in ck.iterdir())


@pytest.mark.slow
def test_resume_may_lower_the_learning_rate_but_not_change_the_experiment(tmp_path, real_catalog):
    """Fault finding: after the NaN stop advised 'lower learning_rate', resuming with a lower one was
    refused as another configuration."""
    run = tmp_path / "run"
    train(built(params(run, real_catalog, max_steps=4, schedule="constant", warmup_steps=0)))
    result = train(built(params(run, real_catalog, max_steps=6, schedule="constant", warmup_steps=0,
                                learning_rate=3e-5)))
    assert result.start_step == 4 and result.step == 6
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in r}
    assert lrs[4] == pytest.approx(3e-4) and lrs[5] == pytest.approx(3e-5) and lrs[6] == pytest.approx(3e-5)
    assert "learning_rate: 0.0003 -> 3e-05" in (run / "run.log").read_text()


@pytest.mark.slow
def test_divergence_is_warned_about_and_can_stop_the_run(tmp_path, real_catalog, monkeypatch):
    """Fault finding: learning_rate 1.0 without clipping climbed to 2.5e11 with no warning."""
    from astrobio_lib.train import loop

    real_accumulate = loop.accumulate
    calls = {"n": 0}

    def exploding(*a, **k):  # the real step, with a loss that blows up from step 12 on
        sums = real_accumulate(*a, **k)
        calls["n"] += 1
        if calls["n"] >= 12:
            sums = {k: v * 1e6 for k, v in sums.items()}
        return sums

    monkeypatch.setattr(loop, "accumulate", exploding)
    result = train(built(params(tmp_path / "run", real_catalog, max_steps=30, divergence_patience=3,
                                divergence_stop=True)))
    assert result.stopped_because == "diverged" and result.step == 14 and result.divergence_warnings == 1
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("divergence") for r in records)
    assert "the run is diverging" in (tmp_path / "run" / "run.log").read_text()
    assert (tmp_path / "run" / "checkpoints" / "step_00000014.pt").exists()


@pytest.mark.slow
def test_a_second_trainer_on_the_same_run_folder_is_refused(tmp_path, real_catalog):
    p = params(tmp_path / "run", real_catalog, max_steps=200, checkpoint_every_steps=100)
    first = run_cli(p, tmp_path, "first")
    wait_for_step(tmp_path / "run", 1, first)
    second = run_cli(p, tmp_path, "second")
    out = second.communicate(timeout=300)[0]
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2
    assert f"in use by another training process: pid {first.pid}" in out


@pytest.mark.slow
def test_pure_bf16_trains_end_to_end(tmp_path, real_catalog):
    """Fault finding: `precision: bf16` failed with "mat1 and mat2 must have the same dtype" (only the
    model was cast); inputs are now cast with it."""
    result = train(built(params(tmp_path / "run", real_catalog, max_steps=3, precision="bf16")))
    assert result.step == 3 and result.skipped_steps == 0
    assert all(math.isfinite(v) for v in losses(tmp_path / "run").values())


@pytest.mark.slow
def test_fsdp2_in_one_process_without_torchrun(tmp_path, real_catalog):
    """Trainer-core issue: `sharding: fsdp2` with one process ended in "RANK expected, but not set"."""
    p = params(tmp_path / "run", real_catalog, max_steps=4, sharding="fsdp2", cpu_offload="params_optimizer",
               optimizer="adamw8bit")
    proc = run_cli(p, tmp_path, "fsdp2")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    dcp = tmp_path / "run" / "checkpoints" / "step_00000004.dcp"
    assert (dcp / "checksums.json").is_file()
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3, 4]


@pytest.mark.slow
def test_training_without_a_built_dataset_names_notebook_01(tmp_path):
    with pytest.raises(DatasetNotBuilt, match="run notebook 01_data_validation for this run first"):
        train(config.from_mapping({"run_dir": str(tmp_path / "run"), **FAST}))


@pytest.mark.slow
def test_compiled_regions_give_the_eager_loss_curve(tmp_path, real_catalog):
    """Throughput issue: `compile: on` (regional torch.compile on CPU) trains the tiny preset along
    the same loss curve as eager, within numerical tolerance."""
    eager = train(built(params(tmp_path / "eager", real_catalog, max_steps=6, compile="off")))
    compiled = train(built(params(tmp_path / "compiled", real_catalog, max_steps=6, compile="on")))
    assert eager.step == compiled.step == 6
    a, b = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-3 * abs(a[step]), (step, a[step], b[step])
    log = (tmp_path / "compiled" / "run.log").read_text()
    assert "regions compiled" in log and "includes compiling the regions" in log


@pytest.mark.slow
def test_loader_workers_give_the_same_run(tmp_path, real_catalog):
    """Throughput issue: `num_workers` is honoured (collation in worker processes, ahead of the
    step) and changes nothing but speed: the same samples in the same order, the same losses."""
    inline = train(built(params(tmp_path / "w0", real_catalog, max_steps=5, num_workers=0)))
    workers = train(built(params(tmp_path / "w2", real_catalog, max_steps=5, num_workers=2)))
    assert inline.step == workers.step == 5
    assert losses(tmp_path / "w0") == losses(tmp_path / "w2")


def test_auto_micro_batch_fits_the_host_budget_and_keeps_the_batch(tmp_path, real_catalog):
    """Throughput issue: `micro_batch_size: auto` picks the largest micro-batch that divides
    batch_size and fits the host-memory budget on CPU, adjusts accumulation, and records both."""
    from astrobio_lib import memory

    seq = config.from_mapping(params(tmp_path / "x", real_catalog)).data.text_max_len
    plan = memory.Plan(precision="fp32", optimizer="adamw")

    def need(m: int) -> float:  # host bytes the budget counts for micro-batch m (CPU: one memory)
        est = memory.estimate(full_preset("tiny"), plan, memory.BatchShape(m, seq, 8 // m))
        return est.host_total + est.device_total

    assert need(1) < need(2) < need(4) < need(8)
    ram_gb = (need(2) + need(4)) / 2 / memory.HOST_LIMIT / 1e9  # room for a micro-batch of 2, not of 4
    mb, accum, why = memory.auto_micro_batch(full_preset("tiny"), plan, seq, 8, memory.hardware_from("cpu", 1, None, ram_gb))
    assert (mb, accum) == (2, 4) and "largest divisor of 8" in why and "4 would need" in why
    roomy = memory.auto_micro_batch(full_preset("tiny"), plan, seq, 8, memory.hardware_from("cpu", 1, None, 64.0))
    assert roomy[:2] == (8, 1)
    with pytest.raises(memory.MemoryBudgetError, match="not even a micro-batch of 1 fits"):
        memory.auto_micro_batch(full_preset("tiny"), plan, seq, 8, memory.hardware_from("cpu", 1, None, 1.0))
    result = train(built(params(tmp_path / "auto", real_catalog, micro_batch_size="auto", batch_size=8,
                                max_steps=2, host_ram_gb=ram_gb)))
    assert (result.micro_batch_size, result.grad_accum_steps) == (2, 4)
    assert "micro_batch_size auto: 2 x 4" in (tmp_path / "auto" / "run.log").read_text()
    with pytest.raises(config.ConfigError, match="micro_batch_size: auto needs batch_size"):
        config.from_mapping(params(tmp_path / "x", real_catalog, micro_batch_size="auto"))
    with pytest.raises(config.ConfigError, match="a number of samples or auto"):
        config.from_mapping(params(tmp_path / "x", real_catalog, micro_batch_size="big"))
