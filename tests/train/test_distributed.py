"""Training issue, done-when 4: DDP and FSDP2 (CPUOffloadPolicy + 8-bit AdamW) on 2 gloo ranks,
compared with one process on the same global batch, and a DCP checkpoint saved on 2 ranks resumed.

Tolerances (stated): the habitability BCE — the primary target, a mean over almost every sample —
matches the single process within 5% at every step (the other components average sparse targets
per rank and draw random graph negatives per rank, so their rank-averaged means differ from a
global mean by design); DDP and FSDP2 match each other within 1e-3 (fp32 vs 8-bit AdamW moments).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import HABITABILITY, REPO, built

pytestmark = pytest.mark.slow
BASE = dict(**HABITABILITY, n_planets=64, label_mc_samples=16, grad_accum_steps=2, val_every_steps=4, checkpoint_every_steps=4,
            log_every_steps=4, wandb_mode="disabled", warmup_steps=2)


def launch(tmp: Path, name: str, catalog: Path, nproc: int, max_steps: int, run_name: str | None = None, **kw):
    p = {"run_dir": str(tmp / (run_name or name)), "catalog_path": str(catalog), "max_steps": max_steps,
         "nproc": nproc, **BASE, **kw}
    built(p)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(p))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "astrobio_lib.train", str(path)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout + res.stderr


def curve(run_dir: Path, key: str = "loss") -> list[float]:
    return [r[key] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_ddp_and_fsdp2_offload_8bit_match_one_process(tmp_path, real_catalog):
    launch(tmp_path, "single", real_catalog, 1, 8, micro_batch_size=4)
    launch(tmp_path, "ddp", real_catalog, 2, 8, micro_batch_size=2, sharding="ddp")
    launch(tmp_path, "fsdp2", real_catalog, 2, 8, micro_batch_size=2, sharding="fsdp2",
           cpu_offload="params_optimizer", optimizer="adamw8bit")
    single = curve(tmp_path / "single", "loss_habitability")
    for name in ("ddp", "fsdp2"):
        other = curve(tmp_path / name, "loss_habitability")
        assert len(other) == 8
        for step, (a, b) in enumerate(zip(single, other, strict=True), 1):
            assert abs(a - b) <= 0.05 * a, f"{name} step {step}: habitability {b} vs single-process {a}"
    ddp, fsdp = curve(tmp_path / "ddp"), curve(tmp_path / "fsdp2")
    assert max(abs(a - b) for a, b in zip(ddp, fsdp, strict=True)) < 1e-3
    assert any((tmp_path / "fsdp2" / "checkpoints").glob("step_*.dcp"))


def test_fsdp2_dcp_checkpoint_resumes_on_two_ranks(tmp_path, real_catalog):
    # a constant schedule: a cosine one depends on max_steps, which differs between the runs
    kw = dict(micro_batch_size=2, sharding="fsdp2", cpu_offload="params_optimizer", optimizer="adamw8bit",
              schedule="constant")
    launch(tmp_path, "full", real_catalog, 2, 12, **kw)
    launch(tmp_path, "part", real_catalog, 2, 8, **kw)
    out = launch(tmp_path, "part_resumed", real_catalog, 2, 12, run_name="part", **kw)
    assert "resumed from" in out and "step_00000008.dcp" in out
    full, joined = curve(tmp_path / "full"), curve(tmp_path / "part")
    assert len(joined) == 12
    assert max(abs(a - b) for a, b in zip(full, joined, strict=True)) < 1e-4, (full, joined)


def test_qlora_under_ddp_on_two_ranks_matches_one_process(tmp_path, real_catalog):
    """Issue 12: each process holds the 4-bit base; DDP synchronises the adapters and the encoders."""
    pytest.importorskip("transformers")
    from astrobio_lib.models import pretrained

    llama = pretrained.make_tiny_checkpoint(tmp_path / "llama")
    extra = dict(llm_checkpoint=str(llama), llm_adapter="qlora", lora_rank=4, text_max_len=96)
    launch(tmp_path, "single", real_catalog, 1, 6, micro_batch_size=4, **extra)
    out = launch(tmp_path, "ddp", real_catalog, 2, 6, micro_batch_size=2, sharding="ddp", **extra)
    assert "qlora on" in out
    single, ddp = curve(tmp_path / "single", "loss_habitability"), curve(tmp_path / "ddp", "loss_habitability")
    assert len(ddp) == 6
    for step, (a, b) in enumerate(zip(single, ddp, strict=True), 1):
        assert abs(a - b) <= 0.05 * a, f"step {step}: habitability {b} vs single-process {a}"
