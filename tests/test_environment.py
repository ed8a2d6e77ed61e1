import json
import subprocess
import sys

import pytest
import torch

from astrobio_lib import environment

FAKE_KEY = "fake-wandb-key-3f9a1c-never-print-me"


@pytest.fixture(scope="module")
def report():
    return environment.collect(min_free_disk_gb=0.001)


def test_report_has_every_item(report):
    items = {c.item for c in report.checks}
    assert {"python", "cpu / ram", "disk", "torch", "torch.distributed", "bitsandbytes",
            "flash-attn", "torch-geometric", "papermill", "jupytext", "wandb"} <= items
    assert any(i.startswith("gpu") for i in items)
    assert all(c.status in ("ok", "warn", "fail") for c in report.checks)
    assert report.facts["torch"] == torch.__version__


def test_bitsandbytes_8bit_optimizer_runs_here(report):
    assert report.facts["bitsandbytes"]["optimizer_8bit_ok"], report.facts["bitsandbytes"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU recommendations")
def test_cpu_recommendation_and_gpu_requirement():
    rep = environment.collect(min_free_disk_gb=0.001)
    assert (rep.recommended_precision, rep.recommended_attention) == ("fp32", "sdpa")
    assert rep.verdict in ("ok", "warn")
    strict = environment.collect(min_free_disk_gb=0.001, require_gpu=True)
    assert strict.verdict == "fail"
    assert [c.status for c in strict.checks if c.item == "gpu"] == ["fail"]


def test_disk_minimum_fails(tmp_path):
    rep = environment.collect(tmp_path, min_free_disk_gb=1e9)
    assert [c.status for c in rep.checks if c.item == "disk"] == ["fail"]


def test_wandb_key_presence_never_value(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    rep = environment.collect(min_free_disk_gb=0.001)
    assert rep.facts["wandb"]["key_present"] is True
    assert rep.facts["wandb"]["mode"] == "offline"
    path = environment.write_json(rep, tmp_path)
    assert FAKE_KEY not in path.read_text()
    assert FAKE_KEY not in rep.to_text()


def test_cli_writes_json(tmp_path):
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.environment", "--run-dir", str(tmp_path),
                          "--min-free-disk-gb", "0.001"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "recommended precision" in res.stdout
    data = json.loads((tmp_path / "environment.json").read_text())
    assert data["verdict"] in ("ok", "warn")
