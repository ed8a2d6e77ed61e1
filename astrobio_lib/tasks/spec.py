"""The interface of a learning task: a :class:`TaskSpec` of builder functions, in the spirit of
torchtitan's ``TrainSpec`` (a dataclass of the functions that make one model trainable, registered
by name). The trainer, the memory budget, the evaluation and the notebooks ask the spec; nothing
outside :mod:`astrobio_lib.tasks` tests a task's name.

A task owns:

- which **modalities** its model encodes (only those encoders are built, budgeted and compiled) and
  its **heads** and losses (:func:`TaskSpec.model` turns a preset's
  :class:`~astrobio_lib.models.fusion.MultimodalConfig` into the task's model);
- how its **data** is prepared by notebook 01 (:attr:`TaskSpec.prepare_data`, shown by
  :attr:`TaskSpec.show_data`, with the data verdict) and opened for training and validation
  (:attr:`TaskSpec.open_data`);
- its **headline** metric (the validation score that picks the best checkpoint and stops early) and
  the loss components its logs and plots carry;
- its **config rules** and the configuration keys that shape its data (structural on resume);
- how notebook 04 **evaluates** it (:attr:`TaskSpec.evaluate`, :attr:`TaskSpec.show_evaluation`).

This module imports nothing from the package but :mod:`astrobio_lib.tasks`' own light parts, so
the configuration can validate a task name without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


class DataNotBuilt(RuntimeError):
    """The run folder has no data for its task: notebook 01 prepares it."""


@dataclass
class DataReport:
    """What notebook 01 prepared for a task: the data verdict (status PASS / WARN / FAIL and a
    headline sentence about the data the task trains on) and whatever its report shows."""

    status: str
    headline: str
    details: dict[str, Any] = field(default_factory=dict)
    next_action: str = ""  # what to change or run when the status is not PASS


@dataclass
class TaskData:
    """The training and validation data of a run, as the trainer needs it.

    ``key`` identifies the data by content (a checkpoint records it: resuming on other data is
    refused); ``built_with`` are the configuration values the data was made with (recorded in the
    checkpoint's configuration, so the provenance is the data's, not a notebook's defaults);
    ``text_len`` is the tokens per sample (0: no text)."""

    train: Any  # a torch Dataset
    val: Any
    collate: Callable[[list], dict[str, Any]]
    key: str
    text_len: int = 0
    synthetic: bool = False
    built_with: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class DataInfo:
    """What a run's prepared data is, read cheaply (no dataset loaded): for notebook 03's header and
    the memory preflight."""

    key: str
    text_len: int
    description: str
    built_with: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The result of notebook 04 for a task: the verdict (status and one headline sentence naming
    the strongest baseline) and whatever its report shows."""

    status: str
    headline: str
    details: dict[str, Any] = field(default_factory=dict)
    next_action: str = ""  # what to change or run when the status is not PASS


@dataclass(frozen=True)
class TaskSpec:
    """One learning task (see the module docstring). Every callable takes the run's
    :class:`~astrobio_lib.config.Config` (``cfg``) first."""

    name: str
    title: str
    """a short description for logs and reports"""
    modalities: tuple[str, ...]
    """the encoders its model builds (a subset of ``astrobio_lib.models.fusion.MODALITIES``)"""
    model: Callable[[Any], Any]
    """MultimodalConfig of a preset -> the task's MultimodalConfig (modalities, heads, sizes)"""
    loss_keys: tuple[str, ...]
    """the loss components (besides ``loss``) its progress lines, validation and plots carry"""
    headline_keys: tuple[str, ...]
    """the components whose sum scores a validation (lower is better): best checkpoint, early stopping"""
    headline_label: str
    """how that score is named in logs and plots, e.g. "gas BCE + retrieval NLL\""""
    data_keys: tuple[str, ...]
    """configuration keys that shape its data: refused when changed on resume"""
    prepare_data: Callable[..., DataReport]
    """(cfg, planets, provenance, data_dir, progress) -> DataReport: notebook 01 builds or reuses it"""
    show_data: Callable[[DataReport], None]
    """notebook 01's sections for this task (tables and figures shown in the report)"""
    data_info: Callable[[Any, Path], DataInfo]
    """(cfg, data_dir) -> DataInfo, cheap. Raises DataNotBuilt"""
    open_data: Callable[[Any, Path], TaskData]
    """(cfg, data_dir) -> the training and validation data. Raises DataNotBuilt"""
    evaluate: Callable[..., Evaluation]
    """(cfg, progress) -> Evaluation of the run's best checkpoint on its test split (notebook 04)"""
    show_evaluation: Callable[[Evaluation], None]
    """notebook 04's sections for this task"""
    rules: Callable[[Any], list[str]] = lambda cfg: []
    """(cfg) -> the problems of a configuration for this task (cross-field rules; empty when fine)"""
    planned_key: Optional[Callable[..., str]] = None
    """(cfg, planets, provenance) -> the identity of the data ``prepare_data`` would make, computed
    without making it (so a run's trained data is never replaced by other data)"""
    check_data: Optional[Callable[[Any, Path], Optional[str]]] = None
    """(cfg, data_dir) -> why the prepared data does not verify (missing, corrupt), or None: a completed
    notebook 01 whose data does not verify is run again"""
    results: Optional[Callable[[Path], dict[str, Any]]] = None
    """(run_dir) -> the run's headline numbers for index.html and the README (from the files its
    evaluation wrote): ``{"finding": str, "tables": {title: [row dicts]}, "numbers": {name: value}}``"""
    description: str = ""

    def headline(self, losses: dict[str, float], prefix: str = "") -> float:
        """The score of a set of losses (``prefix`` "val_" for a validation's)."""
        return sum(losses[f"{prefix}{k}"] for k in self.headline_keys)

    @property
    def has_text(self) -> bool:
        return "text" in self.modalities


def progress_callback(bar: Optional[Any]) -> Optional[Callable[[int, int], None]]:
    """``progress(done, total)`` that moves a tqdm bar to ``done`` (None for no bar)."""
    if bar is None:
        return None
    return lambda done, total: bar.update(done - bar.n)
