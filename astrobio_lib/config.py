"""Typed configuration: one dataclass per concern, validated before any heavy work.

The user-facing configuration is the ``parameters`` cell of each notebook (and the flat
``params/*.yaml`` files that papermill injects into those cells). This module turns such a flat
mapping into a tree of small dataclasses and validates it: an unknown key, a wrong type or an
out-of-range value raises :class:`ConfigError` naming the key, the offending value, where it came
from and, for a typo, the nearest valid key.

Every field here must be declared, with the same type and default, by the parameters cell of at
least one notebook (``tests/test_config.py`` checks both directions). The defaults are the CPU smoke
run's values (``params/smoke.yaml``, what ``make run`` trains), so a notebook opened in JupyterLab
runs the same experiment.

Every field also says how it behaves when a stopped run is resumed (``resume=``): ``structural``
keys change the experiment and are refused (naming the key and both values), ``data`` keys shape a
task's data and are refused when the run's task uses them (:attr:`astrobio_lib.tasks.TaskSpec.data_keys`),
``safe`` keys may change and each change is logged, ``irrelevant`` keys (paths, reporting, hardware
targets) are not compared. :mod:`astrobio_lib.train.checkpoint` derives its lists from these.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import yaml

from astrobio_lib import tasks

__all__ = [
    "ConfigError",
    "Config",
    "RunConfig",
    "EnvironmentConfig",
    "DataConfig",
    "ModelConfig",
    "HardwareConfig",
    "TrainConfig",
    "EvalConfig",
    "all_fields",
    "from_mapping",
    "from_namespace",
    "load_yaml",
    "check_value_type",
    "nearest_key",
]


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


RESUME_CLASSES = ("structural", "data", "safe", "irrelevant")


def param(default: Any, help: str, *, resume: Optional[str] = None, min: Optional[float] = None,
          max: Optional[float] = None, choices: Optional[Iterable[Any] | Callable[[], Iterable[Any]]] = None,
          path: bool = False) -> Any:
    """A dataclass field carrying its help text, its valid range (``choices`` may be a function,
    evaluated when a value is checked) and how it behaves on resume (:data:`RESUME_CLASSES`) in
    ``metadata``."""
    return field(
        default=default,
        metadata={"help": help, "min": min, "max": max, "resume": resume,
                  "choices": choices if callable(choices) or choices is None else tuple(choices), "path": path},
    )


@dataclass
class RunConfig:
    run_dir: str = param("outputs/notebook_defaults",
                         "run folder: every product of the run is written here (relative: inside the repo)",
                         path=True, resume="irrelevant")
    seed: int = param(0, "global random seed (data split, init, sampling)", min=0, resume="structural")


@dataclass
class EnvironmentConfig:
    min_free_disk_gb: float = param(1.0, "fail when the run folder's disk has less free space (GB)",
                                    min=0.0, resume="irrelevant")
    require_gpu: bool = param(False, "fail instead of warn when no CUDA GPU is found", resume="irrelevant")


@dataclass
class DataConfig:
    catalog_source: str = param("snapshot", "auto (catalog_path, then archive, then the shipped snapshot) | file | "
                                "archive | snapshot | synthetic", choices=("auto", "file", "archive", "snapshot", "synthetic"),
                                resume="irrelevant")
    catalog_path: Optional[str] = param(None, "local PSCompPars CSV; None: env ASTROBIO_CATALOG",
                                        path=True, resume="irrelevant")
    label_mc_samples: int = param(256, "Monte-Carlo draws per planet for the soft label P(habitable)",
                                  min=1, max=100_000, resume="data")
    val_fraction: float = param(0.15, "fraction of planets (grouped by host) for validation",
                                min=0.0, max=0.5, resume="data")
    test_fraction: float = param(0.15, "fraction of planets (grouped by host) for the test split",
                                 min=0.0, max=0.5, resume="data")
    n_planets: int = param(256, "planets to build with every modality (0: all); positives and "
                           "climate-domain planets are always kept", min=0, resume="data")
    climate_domain: str = param("core", "CLERO input domain a planet must lie in for a datacube: "
                                "core | extended", choices=("core", "extended"), resume="data")
    metabolic_model: str = param("textbook", "cobra model for the metabolic graphs: textbook | "
                                 "iJO1366 | salmonella", choices=("textbook", "iJO1366", "salmonella"), resume="data")
    text_max_len: int = param(256, "tokens per planet description (bytes, or the llm_checkpoint tokenizer's tokens)",
                              min=16, max=4096, resume="data")
    shard_size: int = param(128, "planets per dataset shard file", min=1, resume="data")
    gas_planets: int = param(40, "rocky planets (one per host star) for the SIMULATED spectra of the gas-detection "
                                 "task; 0: none", min=0, resume="data")
    gas_atmospheres: int = param(10, "atmospheres drawn per planet for the gas-detection spectra", min=1,
                                 resume="data")
    saturation: str = param("exclude", "hosts NIRSpec PRISM saturates on (J < 10.5): exclude them from the "
                                       "gas-detection planets | keep them (simulated with PRISM anyway, flagged)",
                            choices=("exclude", "keep"), resume="data")
    noise_floor: str = param("correlated", "systematic noise floor of the gas-detection spectra (20 ppm per bin): "
                                           "white (independent bins) | correlated (half of it correlated in "
                                           "wavelength; astrobio_lib/data/observing.py)",
                             choices=("white", "correlated"), resume="data")
    spectra_store: Optional[str] = param(None, "folder of the shared store of simulated spectra; None: env "
                                               "ASTROBIO_SPECTRA_STORE, else ~/.cache/astrobio/spectra",
                                         path=True, resume="irrelevant")
    dask_scheduler: Optional[str] = param(None, "address of an existing Dask scheduler to simulate spectra on; None: "
                                                "env ASTROBIO_DASK_SCHEDULER, else a LocalCluster on every core",
                                          resume="irrelevant")
    simulation_workers: int = param(-1, "LocalCluster worker processes that simulate spectra (-1: every core; 0: "
                                        "in the notebook's own process)", min=-1, max=1024, resume="irrelevant")


@dataclass
class ModelConfig:
    model_preset: str = param("tiny", "model size preset: tiny | small | medium | seeds_full",
                              choices=("tiny", "small", "medium", "seeds_full"), resume="structural")
    llm_checkpoint: Optional[str] = param(None, "pretrained Llama-family checkpoint directory (Hugging Face "
                                          "layout): its LLM and tokenizer replace the preset's; None: from scratch",
                                          path=True, resume="irrelevant")  # its sha256 is structural


@dataclass
class HardwareConfig:
    gpu_name: str = param("cpu", "target device for budgets and estimates (cpu, RTX A5000, ...)", resume="irrelevant")
    gpus_per_node: int = param(1, "devices used by the run (1 on CPU)", min=1, max=64, resume="irrelevant")
    gpu_memory_gb: float = param(0.0, "memory per device in GB (0 on CPU: host RAM applies)",
                                 min=0.0, resume="irrelevant")
    host_ram_gb: Optional[float] = param(None, "host RAM of the target machine in GB; None: this "
                                         "machine's", min=1.0, resume="irrelevant")
    mfu: float = param(0.35, "assumed model FLOPs utilisation for time estimates", min=0.01, max=1.0,
                       resume="irrelevant")
    force_plan: bool = param(False, "run a plan the memory budget says does not fit (expect out-of-memory errors)",
                             resume="irrelevant")


@dataclass
class TrainConfig:
    task: str = param(tasks.DEFAULT, "what the model learns: " + " | ".join(tasks.BUILTIN)
                      + " (one package each in astrobio_lib/tasks)", choices=tasks.names, resume="structural")
    gas_train_draws: int = param(8, "training items per noiseless spectrum and epoch, each with fresh noise and N "
                                    "drawn at use (gas-detection task)", min=1, resume="data")
    max_steps: int = param(600, "optimizer steps to run", min=1, resume="safe")
    micro_batch_size: Union[int, str] = param(32, "samples per forward/backward pass, or auto: the largest that fits "
                                                  "the memory budget, keeping batch_size", min=1, resume="structural")
    grad_accum_steps: int = param(1, "micro-batches accumulated per optimizer step", min=1, resume="structural")
    batch_size: Optional[int] = param(None, "samples per optimizer step per process that micro_batch_size: auto keeps "
                                            "(accumulation: batch_size over the chosen micro-batch)", min=1,
                                      resume="irrelevant")  # the resolved micro-batch and accumulation are structural
    learning_rate: float = param(1e-3, "peak learning rate", min=0.0, max=1.0, resume="safe")
    precision: str = param("fp32", "fp32 | bf16-mixed | fp16-mixed | bf16",
                           choices=("fp32", "bf16-mixed", "fp16-mixed", "bf16"), resume="structural")
    optimizer: str = param("adamw", "adamw | adamw8bit | paged_adamw8bit",
                           choices=("adamw", "adamw8bit", "paged_adamw8bit"), resume="structural")
    activation_checkpointing: bool = param(False, "recompute activations per block in backward", resume="structural")
    sharding: str = param("none", "none | ddp | fsdp2", choices=("none", "ddp", "fsdp2"), resume="structural")
    cpu_offload: str = param("none", "none | optimizer | params_optimizer (FSDP2 CPUOffloadPolicy)",
                             choices=("none", "optimizer", "params_optimizer"), resume="structural")
    llm_adapter: str = param("none", "train the LLM fully (none) or through lora / qlora adapters",
                             choices=("none", "lora", "qlora"), resume="structural")
    lora_rank: int = param(16, "LoRA rank r of the adapters", min=1, max=1024, resume="structural")
    lora_alpha: float = param(32.0, "LoRA scaling alpha (the update is scaled by alpha / r)", min=0.0,
                              resume="structural")
    lora_dropout: float = param(0.05, "dropout on the adapters' input", min=0.0, max=0.9, resume="structural")
    lora_targets: str = param("q_proj,k_proj,v_proj,o_proj,gate,up,down",
                              "comma-separated LLM linear layers that get adapters", resume="structural")
    max_epochs: int = param(1000, "stop after this many passes over the training split", min=1, resume="safe")
    max_hours: float = param(672.0, "wall-clock limit in hours, resumed time included", min=0.0, resume="safe")
    schedule: str = param("cosine", "learning-rate schedule after warmup: cosine | onecycle | constant",
                          choices=("cosine", "onecycle", "constant"), resume="structural")
    warmup_steps: int = param(20, "linear warmup steps (cosine and constant schedules)", min=0, resume="structural")
    weight_decay: float = param(0.01, "AdamW weight decay (not applied to norms and biases)", min=0.0,
                                resume="structural")
    grad_clip: float = param(1.0, "clip the global gradient norm to this value (0: off)", min=0.0, resume="safe")
    compile: str = param("auto", "torch.compile the repeated blocks (LLM, ViT, fusion layers): auto (on for CUDA) | on | off",
                         choices=("auto", "on", "off"), resume="safe")
    attention: str = param("auto", "LLM attention: auto (flash-attn when installed, on CUDA in bf16/fp16; else SDPA) | sdpa | flash_attn | eager",
                           choices=("auto", "sdpa", "flash_attn", "eager"), resume="safe")
    val_every_steps: int = param(50, "validate every N optimizer steps", min=1, resume="safe")
    early_stopping_patience: int = param(20, "stop after N validations without improvement", min=1, resume="safe")
    checkpoint_every_steps: int = param(100, "checkpoint every N optimizer steps", min=1, resume="safe")
    checkpoint_every_minutes: float = param(120.0, "also checkpoint every T minutes", min=0.1, resume="safe")
    keep_checkpoints: int = param(5, "keep the last K checkpoints (plus the best)", min=1, resume="safe")
    resume: str = param("auto", "auto (newest valid checkpoint) | never | a checkpoint path", resume="irrelevant")
    log_every_steps: int = param(10, "print a progress line every N optimizer steps", min=1, resume="safe")
    memory_every_steps: int = param(50, "record memory statistics every N optimizer steps", min=1, resume="safe")
    memory_alert_fraction: float = param(0.9, "warn when a device's peak exceeds this fraction of it",
                                         min=0.1, max=1.0, resume="safe")
    nan_patience: int = param(3, "stop (after a checkpoint) after N consecutive non-finite steps", min=1, resume="safe")
    divergence_factor: float = param(10.0, "warn when the loss exceeds this multiple of its running median", min=1.0,
                                     resume="safe")
    divergence_patience: int = param(5, "... for this many consecutive steps (then warn once per episode)", min=1,
                                     resume="safe")
    divergence_stop: bool = param(False, "stop (after a checkpoint) instead of only warning on divergence",
                                  resume="safe")
    checkpoint_async: bool = param(True, "write periodic checkpoints in a background thread (single-file format)",
                                   resume="safe")
    preempt_grace_s: float = param(25.0, "seconds a SIGTERM leaves to write the final checkpoint", min=0.0,
                                   resume="safe")
    nproc: int = param(1, "training processes; more than 1 launches torchrun", min=1, max=64, resume="structural")
    num_workers: int = param(0, "data-loader worker processes", min=0, max=64, resume="safe")
    wandb_mode: str = param("offline", "Weights & Biases: online | offline | disabled (env WANDB_MODE wins)",
                            choices=("online", "offline", "disabled"), resume="irrelevant")


@dataclass
class EvalConfig:
    bootstrap_samples: int = param(200, "bootstrap resamples (by host) for confidence intervals",
                                   min=10, resume="irrelevant")
    gas_noise_draws: int = param(4, "noisy draws per noiseless spectrum and number of transits (gas-detection "
                                    "task's evaluation)", min=1, resume="irrelevant")


@dataclass
class Config:
    """The whole typed configuration of a run; each notebook reads the sections it needs."""

    run: RunConfig = field(default_factory=RunConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, where: str = "parameters") -> "Config":
        """Checks the rules that join several keys; returns self.

        Every plan that a later module would refuse is refused here, before any notebook runs.

        Raises:
            ConfigError: naming the keys that conflict and what to change.
        """
        t, d, h = self.train, self.data, self.hardware
        on_cpu = h.gpu_name.strip().lower() == "cpu"
        problems: list[str] = []
        if t.cpu_offload == "params_optimizer" and t.sharding != "fsdp2":
            problems.append(f"cpu_offload: params_optimizer needs sharding: fsdp2 (FSDP2's CPUOffloadPolicy), got "
                            f"sharding: {t.sharding}")
        if t.cpu_offload == "optimizer":
            problems.append("cpu_offload: optimizer is budgeted by the memory estimator but the trainer does not "
                            "implement it: use none, or params_optimizer with sharding: fsdp2")
        if t.llm_adapter != "none" and not self.model.llm_checkpoint:
            problems.append(f"llm_adapter: {t.llm_adapter} adapts a pretrained LLM: set llm_checkpoint to its directory "
                            f"(or use llm_adapter: none to train the preset's LLM from scratch)")
        if t.llm_adapter != "none" and t.sharding == "fsdp2":
            problems.append(f"llm_adapter: {t.llm_adapter} with sharding: fsdp2 is not supported (FSDP2 cannot shard "
                            f"a bitsandbytes 4-bit base, and the adapters are small): use sharding: ddp")
        if t.llm_adapter != "none":
            from astrobio_lib.models.adapters import AdapterError, parse_targets

            try:
                parse_targets(t.lora_targets)
            except AdapterError as exc:
                problems.append(str(exc))
        if isinstance(t.micro_batch_size, str) and t.micro_batch_size != "auto":
            problems.append(f"micro_batch_size: {t.micro_batch_size!r}: a number of samples or auto")
        elif t.micro_batch_size == "auto" and t.batch_size is None:
            problems.append("micro_batch_size: auto needs batch_size (the samples per optimizer step to keep while "
                            "the micro-batch is chosen), e.g. batch_size: 32")
        elif isinstance(t.micro_batch_size, int) and t.batch_size is not None and \
                t.micro_batch_size * t.grad_accum_steps != t.batch_size:
            problems.append(f"batch_size: {t.batch_size} but micro_batch_size x grad_accum_steps = "
                            f"{t.micro_batch_size} x {t.grad_accum_steps} = {t.micro_batch_size * t.grad_accum_steps}: "
                            f"batch_size is for micro_batch_size: auto; remove it or make them agree")
        if t.precision == "fp16-mixed" and on_cpu:
            problems.append("precision: fp16-mixed needs a CUDA GPU (GradScaler) but gpu_name: cpu: use fp32 or "
                            "bf16-mixed")
        if t.nproc > 1 and t.sharding == "none":
            problems.append(f"nproc: {t.nproc} with sharding: none would train {t.nproc} unsynchronised replicas: "
                            f"use sharding: ddp (or fsdp2), or nproc: 1")
        if not on_cpu and t.nproc > h.gpus_per_node:
            problems.append(f"nproc: {t.nproc} > gpus_per_node: {h.gpus_per_node}: one training process per GPU; "
                            f"lower nproc or raise gpus_per_node")
        known = _known_devices()
        if not on_cpu and h.gpu_name not in known:
            near = nearest_key(h.gpu_name, known)
            problems.append(f"gpu_name: {h.gpu_name!r} is not a device the memory budget knows"
                            + (f" — did you mean {near!r}?" if near else "") + f" (cpu, {', '.join(known)})")
        if not on_cpu and h.gpu_memory_gb <= 0:
            problems.append(f"gpu_name: {h.gpu_name} with gpu_memory_gb: {h.gpu_memory_gb}: set the memory per GPU")
        if d.catalog_path and d.catalog_source not in ("auto", "file"):
            problems.append(f"catalog_path: {d.catalog_path} is read only with catalog_source: file (or auto), but "
                            f"catalog_source: {d.catalog_source}: set catalog_source: file to use it, or remove it")
        spec = tasks.get(t.task)
        # with llm_checkpoint the context is the checkpoint's (checked when it is loaded)
        max_seq = None if self.model.llm_checkpoint or not spec.has_text else _preset_max_seq_len(self.model.model_preset)
        if max_seq is not None and d.text_max_len > max_seq:
            problems.append(f"text_max_len: {d.text_max_len} > the context of model_preset: "
                            f"{self.model.model_preset} ({max_seq} tokens): lower text_max_len or choose a "
                            f"larger preset")
        if not spec.has_text and (t.llm_adapter != "none" or self.model.llm_checkpoint):
            problems.append(f"task: {t.task} has no text (its model encodes {', '.join(spec.modalities)}): "
                            f"llm_checkpoint / llm_adapter would be unused — remove them, or choose a task with text")
        problems += spec.rules(self)
        if t.resume not in ("auto", "never") and not t.resume.strip():
            problems.append("resume: '' — use auto, never or a checkpoint path")
        if not str(self.run.run_dir).strip():
            problems.append("run_dir: '' — name a run folder")
        if problems:
            raise ConfigError(f"inconsistent plan in {where}: " + "; ".join(problems))
        return self

    def flat(self) -> dict[str, Any]:
        """Returns the configuration as the flat ``{key: value}`` mapping of a params file."""
        return {f.name: getattr(getattr(self, s.name), f.name)
                for s in dataclasses.fields(self) for f in dataclasses.fields(getattr(self, s.name))}


_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def parameters_cell(keys: Iterable[str]) -> str:
    """The parameters cell of a notebook that declares ``keys``: one ``name: Type = default  # help``
    line per key, with the configuration's type, default (the smoke values) and help — the one source
    of a notebook's parameters (``scripts/sync_notebook_parameters.py`` writes them,
    ``tests/test_config.py`` checks them)."""
    import json

    fields = all_fields()
    lines = []
    for key in keys:
        info = fields[key]
        default = json.dumps(info.default) if isinstance(info.default, str) else repr(info.default)
        lines.append(f"{key}: {type_name(info.type)} = {default}  # {info.help}")
    return "\n".join(lines)


def keys_by_resume(resume: str) -> tuple[str, ...]:
    """The configuration keys of one resume class (:data:`RESUME_CLASSES`), in declaration order."""
    if resume not in RESUME_CLASSES:
        raise ValueError(f"resume class {resume!r}: one of {RESUME_CLASSES}")
    return tuple(name for name, info in all_fields().items() if info.resume == resume)


def _known_devices() -> list[str]:
    from astrobio_lib.memory.hardware import DEVICES

    return list(DEVICES)


def _preset_max_seq_len(preset: str) -> Optional[int]:
    """The LLM context of a model preset (imported late: models import torch)."""
    from astrobio_lib.models.presets import get_preset

    try:
        return get_preset(preset).llm.max_seq_len
    except ValueError:
        return None


@dataclass(frozen=True)
class FieldInfo:
    section: str
    name: str
    type: Any
    default: Any
    help: str
    min: Optional[float]
    max: Optional[float]
    choices: Optional[Any]  # a tuple, or a function returning the valid values (tasks.names)
    path: bool
    resume: Optional[str] = None

    def valid_choices(self) -> Optional[tuple]:
        return tuple(self.choices()) if callable(self.choices) else self.choices


def all_fields() -> dict[str, FieldInfo]:
    """Returns every configuration key with its section, resolved type, default and range."""
    out: dict[str, FieldInfo] = {}
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in out:  # pragma: no cover - guarded by tests/test_config.py
                raise RuntimeError(f"config key {f.name!r} is defined in two sections")
            m = f.metadata
            out[f.name] = FieldInfo(section, f.name, hints[f.name], f.default, m["help"],
                                    m["min"], m["max"], m["choices"], m["path"], m["resume"])
    return out


def nearest_key(key: str, valid: Iterable[str]) -> Optional[str]:
    """Returns the valid key closest to ``key`` (for 'did you mean ...?'), or None."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


def type_name(tp: Any) -> str:
    """Returns a readable name for a type annotation: ``int``, ``Optional[str]``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return f"Optional[{type_name(args[0])}]"
        return "Union[" + ", ".join(type_name(a) for a in typing.get_args(tp)) + "]"
    if origin in (list, tuple):
        return f"{origin.__name__.capitalize()}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def check_value_type(value: Any, tp: Any) -> bool:
    """True when ``value`` is acceptable for annotation ``tp`` (an int is a valid float; a bool
    is never an int)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return any(check_value_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return isinstance(value, (list, tuple)) and all(check_value_type(v, item_tp) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # pragma: no cover - annotations are limited to the cases above


def _validate_value(info: FieldInfo, value: Any, where: str) -> Any:
    if not check_value_type(value, info.type):
        raise ConfigError(
            f"{info.name}={value!r} in {where}: expected {type_name(info.type)}, got "
            f"{type(value).__name__} ({info.help})")
    if info.type is float or (typing.get_origin(info.type) is typing.Union and float in typing.get_args(info.type)):
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
    if value is not None:
        choices = info.valid_choices()
        if choices is not None and value not in choices:
            raise ConfigError(f"{info.name}={value!r} in {where}: must be one of "
                              f"{', '.join(map(str, choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN
                raise ConfigError(f"{info.name}=nan in {where}: must be a number")
            if value in (float("inf"), float("-inf")):
                raise ConfigError(f"{info.name}={value} in {where}: must be a finite number")
            if info.min is not None and value < info.min:
                raise ConfigError(f"{info.name}={value!r} in {where}: must be >= {info.min}")
            if info.max is not None and value > info.max:
                raise ConfigError(f"{info.name}={value!r} in {where}: must be <= {info.max}")
    return value


def from_mapping(values: Mapping[str, Any], where: str = "parameters") -> Config:
    """Returns a validated :class:`Config` from a flat ``{key: value}`` mapping.

    Keys not given keep their defaults. ``where`` names the source in error messages.

    Raises:
        ConfigError: an unknown key (with the nearest valid key), a wrong type, or an
            out-of-range value; the message names the key and ``where``.
    """
    fields = all_fields()
    per_section: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for key, value in values.items():
        info = fields.get(key)
        if info is None:
            near = nearest_key(key, fields)
            hint = f" — did you mean {near!r}?" if near else ""
            raise ConfigError(f"unknown parameter {key!r} in {where}{hint} "
                              f"(valid keys are listed by `papermill --help-notebook`)")
        per_section[info.section][key] = _validate_value(info, value, where)
    return Config(**{s: _SECTIONS[s](**kw) for s, kw in per_section.items()}).validate(where)


def from_namespace(namespace: Mapping[str, Any], where: str = "notebook parameters") -> Config:
    """Returns a validated :class:`Config` from a notebook's globals (the parameters cell).

    Only names that are configuration keys are taken; everything else in the namespace
    (imports, helpers) is ignored.
    """
    keys = all_fields()
    # plain `papermill -p/-f` only warns on unknown parameters and injects them anyway: a literal
    # lower-case global that is no configuration key can only be such a typo (the pipeline refuses
    # it earlier); imported CONSTANTS and private names are not parameters
    unknown = [k for k, v in namespace.items()
               if k not in keys and not k.startswith("_") and k not in _INTERACTIVE_NAMES and k != k.upper()
               and _is_literal(v)]
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {near!r}?)" if (near := nearest_key(k, keys)) else "") for k in unknown]
        raise ConfigError(f"unknown parameter(s) {', '.join(hints)} in {where}: no notebook declares them "
                          f"(valid keys are listed by `papermill --help-notebook`)")
    cfg = from_mapping({k: v for k, v in namespace.items() if k in keys}, where=where)
    cfg.run.run_dir = str(resolve_run_dir(cfg.run.run_dir))
    return cfg


def resolve_run_dir(run_dir: str) -> Path:
    """Returns a notebook's run folder as an absolute path: a relative one is taken from the
    repository root (where ``outputs/`` lives), so the notebooks write to the same folder whether
    papermill, nbmake or JupyterLab started them, from whatever working directory."""
    path = Path(run_dir).expanduser()
    return path if path.is_absolute() else (repo_root() / path).resolve()


def repo_root() -> Path:
    """The checkout the package runs from (an editable install: ``pyproject.toml`` and
    ``notebooks/`` beside the package), else the current working directory."""
    parent = Path(__file__).resolve().parent.parent
    return parent if (parent / "pyproject.toml").is_file() and (parent / "notebooks").is_dir() else Path.cwd()


_INTERACTIVE_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


def _is_literal(value: Any) -> bool:
    """True for the values papermill injects: numbers, strings, booleans, None, lists, dicts."""
    return value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))


class YAML12FloatLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers such as ``3e-4`` as floats (YAML 1.2) — YAML 1.1
    requires a dot (``3.0e-4``) and would otherwise give the string '3e-4'."""


YAML12FloatLoader.add_implicit_resolver(  # only the form YAML 1.1 misses: an exponent without a dot
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml_value(raw: str) -> Any:
    """Returns one YAML scalar as the params files read it (``3e-4`` is a float)."""
    return yaml.load(raw, Loader=YAML12FloatLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Returns the flat mapping stored in a params YAML file.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or is not a flat mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found: pass one of params/*.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"params file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}): a params file is "
                          f"flat YAML, `key: value` per line") from exc
    try:
        data = yaml.load(text, Loader=YAML12FloatLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path}: expected a mapping of parameter: value, "
                          f"got {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"params file {path}: key {key!r} is not a string")
        if isinstance(value, dict):
            raise ConfigError(f"params file {path}: {key} is a nested mapping; params files are "
                              f"flat (papermill injects each key as one notebook variable)")
    return data
