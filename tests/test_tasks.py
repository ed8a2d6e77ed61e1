"""Tasks as plug-ins (issue 22): a third task in one new file (tests/toy_task.py) plus one registration
trains, checkpoints, resumes exactly and evaluates through the library's own entry points; the
built-in tasks keep their names inside astrobio_lib/tasks; resume refusals name the key."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import torch

from astrobio_lib import config, evaluate, tasks
from astrobio_lib.data import catalog
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train.loop import train

from .conftest import REPO
from .toy_task import NAME, SPEC


def _toy(run: Path, **kw):
    return config.from_mapping({"run_dir": str(run), "task": NAME, "n_planets": 400, "micro_batch_size": 16,
                                "grad_accum_steps": 1, "learning_rate": 1e-3, "warmup_steps": 0, "schedule": "constant",
                                "val_every_steps": 1, "checkpoint_every_steps": 1, "log_every_steps": 1,
                                "wandb_mode": "disabled", **kw})


@pytest.fixture(scope="module")
def planets():
    return catalog.load_catalog("snapshot")


def test_a_toy_task_in_one_file_trains_checkpoints_resumes_and_evaluates(tmp_path, planets):
    assert NAME in tasks.names() and tasks.get(NAME) is SPEC
    assert config.all_fields()["task"].valid_choices()[-1] == NAME  # the configuration's choices: the registry's
    for run in ("ref", "run"):
        cfg = _toy(tmp_path / run, max_steps=2)
        report = SPEC.prepare_data(cfg, *planets, Path(cfg.run.run_dir) / "data")
        assert report.status == "PASS"
    ref = train(_toy(tmp_path / "ref", max_steps=2))
    first = train(_toy(tmp_path / "run", max_steps=1))
    resumed = train(_toy(tmp_path / "run", max_steps=2))
    assert (ref.step, first.step, resumed.step) == (2, 1, 2) and resumed.resumed_from.endswith("step_00000001.pt")
    a, _, _ = ckpt.load_model_weights(tmp_path / "ref" / "checkpoints", "latest")
    b, flat, _ = ckpt.load_model_weights(tmp_path / "run" / "checkpoints", "latest")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise as if never stopped
    assert flat["task"] == NAME and not [k for k in b if k.startswith(("text_encoder", "climate_", "graph_",
                                                                        "spectrum_"))]
    evaluation = evaluate.evaluate(_toy(tmp_path / "run"))
    assert evaluation.status in ("PASS", "WARN") and "R²" in evaluation.headline
    # the budget and the plan search ask the task's model: catalog encoder, fusion, one head
    from astrobio_lib import memory

    model_cfg = tasks.model_config(_toy(tmp_path / "run").flat())
    est = memory.estimate(model_cfg, memory.Plan(precision="fp32", optimizer="adamw"), memory.BatchShape(16, 0, 1))
    assert set(est.parameters) == {"fusion_and_heads", "total"}

    # another task on the same run folder is refused, naming the key (never resumed on another task)
    tasks.register(dataclasses.replace(SPEC, name="toy_radius_copy"))
    with pytest.raises(ckpt.ConfigMismatch, match="task: 'toy_radius' -> 'toy_radius_copy'"):
        train(_toy(tmp_path / "run", task="toy_radius_copy", max_steps=3))
    with pytest.raises(ckpt.ConfigMismatch, match="n_planets: 400 -> 300"):  # a key that shapes its data
        train(_toy(tmp_path / "run", n_planets=300, max_steps=3))


def test_every_builtin_task_is_a_complete_spec():
    for name in tasks.BUILTIN:
        spec = tasks.get(name)
        assert spec.name == name and spec.modalities[0] == "catalog"
        assert set(spec.headline_keys) <= set(spec.loss_keys) and spec.headline_label
        assert set(spec.data_keys) <= set(config.all_fields())
        cfg = tasks.model_config({"task": name, "model_preset": "tiny"})
        assert cfg.modalities == spec.modalities and cfg.heads is not None
    with pytest.raises(tasks.UnknownTask, match="task 'nope': one of gas_detection, habitability"):
        tasks.get("nope")


def test_task_names_live_only_in_the_tasks_package():
    """No `task == "..."` outside astrobio_lib/tasks: the loop, memory, evaluation and notebooks ask
    the task (the registry's table, inside tasks/, is where the names are)."""
    res = subprocess.run(["grep", "-rln", "-e", "gas_detection", "-e", "habitability", "astrobio_lib/",
                          "--include=*.py"], cwd=REPO, capture_output=True, text=True)
    outside = [f for f in res.stdout.split() if not f.startswith("astrobio_lib/tasks/")]
    assert not outside, outside
