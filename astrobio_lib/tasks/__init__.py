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
from typing import Any, Mapping

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


__all__ = ["BUILTIN", "DEFAULT", "DataInfo", "DataNotBuilt", "DataReport", "Evaluation", "TaskData", "TaskSpec",
           "UnknownTask", "build_model", "get", "model_config", "names", "of", "progress_callback", "register"]
