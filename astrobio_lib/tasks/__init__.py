"""Learning tasks as plug-ins: one package per task, registered by name.

``get(name)`` returns a task's :class:`~astrobio_lib.tasks.spec.TaskSpec`; the built-in tasks are
imported on first use (the table below is the registry), a new one is one module plus
``register(SPEC)``::

    from astrobio_lib import tasks
    tasks.register(TaskSpec(name="my_task", ...))   # then task: my_task in a params file

The configuration takes its list of valid ``task`` values from :func:`names`. The trainer, the
memory budget, the evaluation and the notebooks ask the spec (its modalities, heads, data, headline,
rules, evaluation), so adding a task changes no other file.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Mapping, Optional

from astrobio_lib.tasks.spec import (
    DataInfo,
    DataNotBuilt,
    DataReport,
    Evaluation,
    TaskData,
    TaskSpec,
    progress_callback,
)

# the registry of built-in tasks: name -> the module that defines its SPEC (imported on first use)
BUILTIN = {
    "gas_detection": "astrobio_lib.tasks.gas_detection",
    "habitability": "astrobio_lib.tasks.habitability",
}
DEFAULT = "gas_detection"  # the product's question; what `make run` trains
TRAINED_CONFIG = "trained_config.json"  # in <run>/checkpoints: what the run's checkpoints were trained with
_REGISTERED: dict[str, TaskSpec] = {}


class UnknownTask(ValueError):
    """A task name that is neither built in nor registered."""


def register(spec: TaskSpec) -> TaskSpec:
    """Registers ``spec`` under its name (replacing an earlier registration of that name); returns it."""
    _REGISTERED[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """Every task name a configuration may choose: the built-in ones, then the registered ones."""
    return tuple(dict.fromkeys([*BUILTIN, *_REGISTERED]))


def get(name: str) -> TaskSpec:
    """Returns the spec of task ``name``.

    Raises:
        UnknownTask: naming the valid tasks.
    """
    if name not in _REGISTERED and name in BUILTIN:
        module = importlib.import_module(BUILTIN[name])
        register(module.SPEC)
    if name not in _REGISTERED:
        raise UnknownTask(f"task {name!r}: one of {', '.join(names())}")
    return _REGISTERED[name]


def of(cfg_or_flat: Any) -> TaskSpec:
    """The spec of a run: from a :class:`~astrobio_lib.config.Config` or a flat mapping (a checkpoint's
    configuration; one without ``task`` is of the default task)."""
    if isinstance(cfg_or_flat, Mapping):
        return get(cfg_or_flat.get("task", DEFAULT))
    return get(cfg_or_flat.train.task)


class TrainedDataChanged(ValueError):
    """Parameters that would replace the data a run's checkpoints were trained on."""


def trained_config(run_dir: Any) -> Optional[dict[str, Any]]:
    """The configuration a run's checkpoints were trained with (their data's own settings and identity
    included), or None when the run has no checkpoint."""
    from pathlib import Path

    folder = Path(run_dir) / "checkpoints"
    path = folder / TRAINED_CONFIG
    if not path.is_file() or not any(folder.glob("step_*")):
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def changed_data(cfg: Any, trained: Mapping[str, Any], planned_key: Optional[str] = None) -> dict[str, tuple]:
    """{key: (trained with, asked for)} for the task and the task's data keys that differ between a run's
    checkpoints and ``cfg`` — and ``data`` when ``planned_key`` (the identity of the data ``cfg`` would
    build) is not the data the checkpoints were trained on."""
    flat = cfg.flat()
    out: dict[str, tuple] = {}
    if trained.get("task", DEFAULT) != flat["task"]:
        out["task"] = (trained.get("task", DEFAULT), flat["task"])
    elif flat["task"] in names():
        for key in get(flat["task"]).data_keys:
            if key in trained and trained[key] != flat[key]:
                out[key] = (trained[key], flat[key])
    if planned_key is not None and trained.get("dataset_build_sha256") not in (None, planned_key) and not out:
        out["data"] = (str(trained["dataset_build_sha256"])[:12] + "…", planned_key[:12] + "…")
    return out


def refuse_changed_data(cfg: Any, run_dir: Any, where: str, planned_key: Optional[str] = None) -> None:
    """Refuses parameters that would replace the data a run's checkpoints were trained on: the data a run
    trained on is immutable for that run.

    Raises:
        TrainedDataChanged: naming each key with both values, and the two ways forward.
    """
    trained = trained_config(run_dir)
    diff = changed_data(cfg, trained, planned_key) if trained else {}
    if diff:
        raise TrainedDataChanged(
            f"{run_dir} has checkpoints trained on other data than {where} describes: "
            + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            + ". Its data will not be replaced: use another run name for the new settings, or restart this run "
              "from scratch with `python -m astrobio_lib.pipeline PARAMS --restart-training` (its checkpoints, "
              "metrics and data are moved aside into superseded-<time>/, not deleted)")


def prepare_data(cfg: Any, planets, provenance, data_dir: Any, progress=None) -> "DataReport":
    """Notebook 01: the run's task prepares its data — refused first when the run has checkpoints trained
    on other data (:func:`refuse_changed_data`, with the identity of the data these settings describe)."""
    from pathlib import Path

    spec = of(cfg)
    planned = spec.planned_key(cfg, planets, provenance) if spec.planned_key else None
    refuse_changed_data(cfg, Path(cfg.run.run_dir), "these parameters", planned)
    return spec.prepare_data(cfg, planets, provenance, Path(data_dir), progress)


def model_config(flat: Mapping[str, Any]):
    """The model configuration of a run (flat configuration): the preset (with a pretrained LLM's
    architecture when ``llm_checkpoint`` is set), shaped by the task: its modalities and heads."""
    from astrobio_lib.models import adapters

    spec = of(flat)
    cfg = spec.model(adapters.model_config(flat))
    if set(cfg.modalities) != set(spec.modalities):
        raise ValueError(f"task {spec.name}: its model builds {cfg.modalities}, its spec says {spec.modalities}")
    return cfg


def build_model(flat: Mapping[str, Any], device: Any = "cpu"):
    """The model a run trains (flat configuration), on ``device``: :func:`model_config` built by
    :func:`astrobio_lib.models.adapters.build` (pretrained LLM, pure-bf16 cast, LoRA / QLoRA)."""
    from astrobio_lib.models import adapters

    return adapters.build(flat, device, model_cfg=model_config(flat))


__all__ = ["BUILTIN", "DEFAULT", "TRAINED_CONFIG", "DataInfo", "DataNotBuilt", "DataReport", "Evaluation", "TaskData",
           "TaskSpec", "TrainedDataChanged", "UnknownTask", "build_model", "changed_data", "get", "model_config", "names",
           "of", "prepare_data", "progress_callback", "refuse_changed_data", "register", "trained_config"]
