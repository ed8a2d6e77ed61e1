"""Issue 23: the data a run trained on is never replaced or used when it does not verify, settings that
would change it are refused by name before anything runs, and bad input gets a named error with exit 2.
(Preemption through the notebooks: tests/test_pipeline.py; the lock race and the spectra crash window:
tests/train/test_checkpointer.py and tests/data/test_spectra_store.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from astrobio_lib import pipeline

from .conftest import REPO

GAS = {"gas_planets": 6, "gas_atmospheres": 4, "simulation_workers": 0, "max_steps": 20, "checkpoint_every_steps": 10,
       "val_every_steps": 10, "log_every_steps": 10, "wandb_mode": "disabled", "warmup_steps": 2}


def _pipeline(params: Path, out: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astrobio_lib.pipeline", str(params), "--outputs", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_trained_data_is_never_replaced_and_data_that_does_not_verify_is_rebuilt(tmp_path):
    """Finding 3: `gas_atmospheres` 4 -> 5 on a run with checkpoints used to regenerate the spectra its
    checkpoints were trained on (01 ran, 02 ran, only 03 refused). Now the pipeline refuses before any
    notebook runs, naming the key; --restart-training moves the run aside and starts over. Finding 4: a
    run whose set no longer verifies re-runs 01 instead of skipping it. Finding 7: what a run records is
    the data's own settings."""
    params = tmp_path / "gas.yaml"
    params.write_text(yaml.safe_dump(GAS))
    out = tmp_path / "out"
    first = _pipeline(params, out, "--only", "01", "03")
    assert first.returncode == 0, first.stderr[-3000:]
    run = out / "gas"
    manifest = json.loads((run / "data" / "gas_spectra" / "manifest.json").read_text())
    # 03 does not declare gas_planets: what it records is the data's value (6), not its default (40)
    recorded = yaml.safe_load((run / "train_params.yaml").read_text())
    trained = json.loads((run / "checkpoints" / "trained_config.json").read_text())
    for flat in (recorded, trained):
        assert (flat["gas_planets"], flat["gas_atmospheres"], flat["catalog_source"]) == (6, 4, "snapshot")
    assert trained["dataset_build_sha256"] == manifest["cache_key"]

    refused = _pipeline(params, out, "-p", "gas_atmospheres=5")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "gas_atmospheres: 4 -> 5" in refused.stderr and "--restart-training" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads((run / "data" / "gas_spectra" / "manifest.json").read_text()) == manifest  # untouched
    state = json.loads((run / pipeline.STATE_FILE).read_text())["notebooks"]
    assert state["01_data_validation"]["status"] == "completed"  # nothing ran
    task = _pipeline(params, out, "-p", "task=habitability")
    assert task.returncode == 2 and "task: 'gas_detection' -> 'habitability'" in task.stderr

    # a set that does not verify: 01 is run again (not skipped) and rebuilds it from the store
    truths = next((run / "data" / "gas_spectra").glob("truths-*.npz"))
    truths.write_bytes(truths.read_bytes()[:100])
    again = _pipeline(params, out, "--only", "01")
    assert again.returncode == 0, again.stderr[-3000:]
    log = (run / "run.log").read_text()
    assert "01_data_validation completed earlier, but its data does not verify" in log and truths.name in log
    from astrobio_lib.data import gas_spectra as gs

    assert gs.load(run / "data" / "gas_spectra").manifest["cache_key"] == manifest["cache_key"]

    restarted = _pipeline(params, out, "--only", "01", "03", "-p", "gas_atmospheres=5", "--restart-training")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    aside = list(run.glob("superseded-*"))
    assert len(aside) == 1 and list((aside[0] / "checkpoints").glob("step_*.pt"))  # kept, not deleted
    assert json.loads((run / "checkpoints" / "trained_config.json").read_text())["gas_atmospheres"] == 5
    assert "moved to" in (run / "run.log").read_text()


def test_unusable_input_and_folders_are_named_errors_with_exit_2(tmp_path):
    """Finding 6 (and 5): a params file of binary bytes, `checkpoints` that is a file, a run folder the file
    system refuses, sizes the splits cannot hold, ±inf: a named error, exit 2, no traceback."""
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    res = _pipeline(binary, tmp_path / "out", timeout=120)
    assert res.returncode == 2 and "is not UTF-8 text" in res.stderr and "Traceback" not in res.stderr

    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(GAS))
    (tmp_path / "out" / "p").mkdir(parents=True)
    (tmp_path / "out" / "p" / "checkpoints").write_text("not a folder")
    res = _pipeline(params, tmp_path / "out", timeout=120)
    assert res.returncode == 2 and "checkpoints exists and is not a folder" in res.stderr
    res = _pipeline(params, Path("/sys"), "--run-name", "kernel", timeout=120)  # exists, the kernel refuses writes
    assert res.returncode == 2 and "/sys/kernel is not writable" in res.stderr and "Traceback" not in res.stderr
    for key, value, named in (("gas_planets", 1, "at least 5 planets"), ("gas_planets", 100000, "at most"),
                              ("weight_decay", ".inf", "must be a finite number")):
        res = _pipeline(params, tmp_path / "out", "-p", f"{key}={value}", timeout=120)
        assert res.returncode == 2 and key in res.stderr and named in res.stderr, res.stderr[-1000:]

    # the trainer alone: its run folder unusable -> exit 2 naming the path
    train_params = tmp_path / "t.yaml"
    train_params.write_text(yaml.safe_dump({**GAS, "run_dir": "/sys/kernel"}))
    res = subprocess.run([sys.executable, "-m", "astrobio_lib.train", str(train_params)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "/sys/kernel is not writable" in res.stderr and "Traceback" not in res.stderr
