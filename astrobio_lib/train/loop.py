"""The training loop, read top to bottom.

``train(cfg)`` trains the run's task (:mod:`astrobio_lib.tasks`) on the data notebook 01 prepared in
the run folder (it never builds data itself): :func:`setup` asks the task to open its training and
validation data, asks the memory estimator whether the task's model fits (before allocating it),
checks that the disk can hold the checkpoints, builds model / optimizer / schedule into a
:class:`~astrobio_lib.train.checkpoint.TrainState` and resumes it from the newest valid checkpoint;
:func:`run_loop` then repeats: take ``grad_accum_steps`` micro-batches, forward + backward each with
its share of the step's samples as loss weight, clip, guard against NaN/Inf, step, log, validate,
checkpoint — until a limit (steps, epochs, wall-clock hours, early stopping, K non-finite steps in a
row, a divergence stop) ends it, or SIGTERM/SIGINT asks it to: then it finishes the step, checkpoints
within ``preempt_grace_s`` and returns ``stopped_because="interrupted"``. Run the same thing again
and it continues.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from astrobio_lib import memory, tasks, tracking
from astrobio_lib.config import Config
from astrobio_lib.fsutil import RunLock, atomic_write, usable_folder
from astrobio_lib.inference import batch_size_of, run_batches, to_device
from astrobio_lib.models import adapters, pretrained
from astrobio_lib.optim import build_optimizer, build_scheduler, optimizer_for_groups, param_groups
from astrobio_lib.precision import autocast_for, input_dtype
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train import compile as compile_mod
from astrobio_lib.train import distributed
from astrobio_lib.train.data_order import ResumableOrder
from astrobio_lib.train.preemption import Preemption

log = logging.getLogger("astrobio.train")

DIVERGENCE_WINDOW = 50  # steps in the running median the divergence check compares against
DatasetNotBuilt = tasks.DataNotBuilt  # the run folder has no data for its task: notebook 01 prepares it

__all__ = ["DatasetNotBuilt", "Setup", "TrainResult", "accumulate", "autocast_for", "hardware_for", "input_dtype",
           "plan_for", "run_loop", "seed_everything", "setup", "to_device", "train", "validate", "with_batch"]


@dataclass
class TrainResult:
    start_step: int
    step: int
    stopped_because: str  # max_steps | max_epochs | max_hours | early_stopping | non_finite | diverged | interrupted
    resumed_from: Optional[str]
    last_checkpoint: Optional[str]
    best_val: Optional[float]
    skipped_steps: int
    elapsed_s: float
    checkpoints: list[str] = field(default_factory=list)
    checkpoint_stall_s: float = 0.0
    divergence_warnings: int = 0
    interrupted_by: Optional[str] = None
    micro_batch_size: int = 0  # as trained (micro_batch_size: auto resolved)
    grad_accum_steps: int = 0
    task: str = ""
    best_step: Optional[int] = None  # the step of the best validation
    last_val: Optional[float] = None  # the last validation's score
    vals_without_improvement: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (the VAE's noise and PyG's negative sampling draw from them)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hardware_for(cfg: Config) -> memory.Hardware:
    return memory.hardware_from(cfg.hardware.gpu_name, cfg.hardware.gpus_per_node, cfg.hardware.gpu_memory_gb,
                                cfg.hardware.host_ram_gb)


def plan_for(cfg: Config, world_size: int) -> memory.Plan:
    t = cfg.train
    return memory.Plan(precision=t.precision, optimizer=t.optimizer, activation_checkpointing=t.activation_checkpointing,
                       sharding=t.sharding, world_size=world_size, cpu_offload=t.cpu_offload, llm_adapter=t.llm_adapter,
                       lora_rank=t.lora_rank, lora_dropout=t.lora_dropout,
                       attention=adapters.resolve_attention(t.attention, t.precision)[0])


def accumulate(model, batches: list[dict[str, Any]], device, precision: str, scaler=None,
               sharding: str = "none") -> dict[str, torch.Tensor]:
    """Forward + backward over the micro-batches of one optimizer step; returns the step's losses
    as 0-d tensors on the device (summed there: no host sync per micro-batch).

    Each micro-batch's loss is weighted by its share of the step's samples, so k micro-batches of
    m give the gradient of one batch of k*m for per-sample-mean losses, and a short final
    micro-batch counts for what it holds. Gradients are synchronised only on the last one.
    """
    n_step = sum(batch_size_of(b) for b in batches)
    sums: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(batches):
        batch = to_device(batch, device, input_dtype(precision))
        weight = batch_size_of(batch) / n_step
        with distributed.gradient_sync(model, sharding, sync=i == len(batches) - 1):
            with autocast_for(precision, device):
                out = model(batch)
            loss = out["loss"] * weight
            (scaler.scale(loss) if scaler else loss).backward()
        for k, v in out.items():
            if k.startswith("loss"):
                term = v.detach().float() * weight
                sums[k] = sums[k] + term if k in sums else term
    return sums


def validate(model, dataset, collate, micro_batch: int, device, precision: str) -> dict[str, float]:
    """Returns the mean of every loss over the validation split, as ``val_<loss>`` (every rank runs
    all of it: FSDP needs all)."""
    _, losses = run_batches(model, dataset, collate, micro_batch, device=device, precision=precision)
    return {f"val_{k}": v for k, v in losses.items()}


@dataclass
class Setup:
    """Everything :func:`run_loop` needs, built by :func:`setup`."""

    cfg: Config
    info: distributed.DistInfo
    run_dir: Path
    spec: tasks.TaskSpec
    data: tasks.TaskData
    state: ckpt.TrainState
    checkpointer: ckpt.Checkpointer
    sched_target: Any
    resumed_from: Optional[str]
    t_start: float
    flops_per_sample: float = 0.0  # model FLOPs (forward + backward) per sample, as in the memory budget
    peak_flops: Optional[float] = None  # the devices' dense bf16 peak (None: CPU or an unknown GPU)

    @property
    def collate(self):
        return self.data.collate


def setup(cfg: Config, info: distributed.DistInfo, data_dir: Optional[Path] = None) -> Setup:
    """Opens the task's data, runs the preflight, builds the train state and resumes it.

    Raises:
        DatasetNotBuilt: the run folder has no data for the task.
        memory.MemoryBudgetError: the plan does not fit (unless ``force_plan``).
        ckpt.CheckpointError: no disk space for the checkpoints; checkpoints exist but none is valid;
            the checkpoint belongs to another configuration (:class:`ckpt.ConfigMismatch`, naming the keys);
            ``resume`` names an unloadable path.
    """
    t = cfg.train
    spec = tasks.of(cfg)
    run_dir = Path(cfg.run.run_dir)
    t_start = time.monotonic()
    device = info.device
    seed_everything(cfg.run.seed + info.rank)  # a resumed run replaces these states from its checkpoint

    # ---- data: prepared by notebook 01; the trainer only reads it, through the task
    data_dir = Path(data_dir) if data_dir else run_dir / "data"
    data = spec.open_data(cfg, data_dir)
    log.info("task %s (%s): %s", spec.name, spec.title, data.description)
    if data.synthetic:
        log.warning("training on a SYNTHETIC catalog: results say nothing about real planets")

    # ---- preflight: refuse a plan that does not fit, before allocating anything
    flat_cfg = cfg.flat()
    model_cfg = tasks.model_config(flat_cfg)  # the task's model: its modalities and heads
    if model_cfg.has("text"):
        log.info("attention: %s (%s)", model_cfg.llm.attention, adapters.resolve_attention(t.attention, t.precision)[1])
        source = (f"the LLM checkpoint {cfg.model.llm_checkpoint}" if cfg.model.llm_checkpoint
                  else f"model_preset {cfg.model.model_preset}")
        if data.text_len > model_cfg.llm.max_seq_len:
            raise memory.MemoryBudgetError(f"the dataset in {data_dir} has text_max_len={data.text_len} > the context "
                                           f"of {source} ({model_cfg.llm.max_seq_len})")
    plan, hardware = plan_for(cfg, info.world_size), hardware_for(cfg)
    auto_batch = t.micro_batch_size == "auto"
    if auto_batch:  # the largest micro-batch that fits, accumulation keeping batch_size; recorded as numbers
        mb, accum, why = memory.auto_micro_batch(model_cfg, plan, data.text_len, t.batch_size, hardware)
        cfg = with_batch(cfg, mb, accum)
        t, flat_cfg = cfg.train, cfg.flat()
        log.info("%s", why)
    shape = memory.BatchShape(t.micro_batch_size, data.text_len, t.grad_accum_steps)
    try:
        est = memory.preflight(model_cfg, plan, shape, hardware)
        log.info("preflight: plan '%s' on %s: %.2f GB per device, %.1f GB host — fits", plan.name, hardware.name,
                 est.device_total / 1e9, est.host_total / 1e9)
    except memory.MemoryBudgetError as exc:
        if not cfg.hardware.force_plan:
            raise
        log.warning("preflight says the plan does NOT fit, training anyway because force_plan is set: %s", exc)
    if device.type == "cuda":
        while True:
            try:
                probe_preflight(cfg, model_cfg, plan, shape, data, device)
                break
            except memory.MemoryBudgetError:
                smaller = memory.micro_batch_candidates(t.batch_size, below=t.micro_batch_size) if t.batch_size else []
                if not auto_batch or not smaller:
                    raise
                log.warning("micro_batch_size auto: the probe refuses %d; trying %d", t.micro_batch_size, smaller[0])
                cfg = with_batch(cfg, smaller[0], t.batch_size // smaller[0])
                t, flat_cfg = cfg.train, cfg.flat()
                shape = memory.BatchShape(t.micro_batch_size, data.text_len, t.grad_accum_steps)

    # ---- model, optimizer, schedule: the train state
    model = tasks.build_model(flat_cfg, device)  # + pretrained LLM, pure-bf16 cast, LoRA/QLoRA adapters
    if t.llm_adapter != "none":
        counts = adapters.parameter_counts(model)
        log.info("%s on %s: %s trainable parameters (adapters, encoders, fusion, heads), %s frozen", t.llm_adapter,
                 cfg.model.llm_checkpoint, f"{counts['trainable']:,}", f"{counts['frozen']:,}")
    if compile_mod.wanted(t.compile, device):
        regions = compile_mod.compile_regions(model)
        log.info("compile %s: %d regions compiled (%s …); PyG graph code stays eager; the first step includes "
                 "compilation", t.compile, len(regions), ", ".join(regions[:3]))
    else:
        log.info("compile %s: eager on %s", t.compile, device.type)
    model = distributed.wrap(model, t.sharding, info, t.precision, t.cpu_offload)
    if distributed.is_sharded(model) and t.optimizer != "adamw":
        # bitsandbytes rejects DTensors (bitsandbytes#1403): step on the local shards
        optimizer = distributed.LocalShardOptimizer(
            model, lambda groups: optimizer_for_groups(groups, t.optimizer, t.learning_rate, device),
            param_groups(model, t.weight_decay))
        sched_target = optimizer.inner
    else:
        optimizer = build_optimizer(model, t.optimizer, t.learning_rate, t.weight_decay)
        sched_target = optimizer
    scheduler = build_scheduler(sched_target, t.schedule, t.max_steps, t.warmup_steps)
    scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16-mixed" else None
    order = ResumableOrder(len(data.train), t.micro_batch_size, cfg.run.seed, info.world_size, info.rank)
    # the recorded configuration: the data's own settings (its manifest's, not a notebook's defaults) and
    # its identity by content — resuming on other data is refused
    flat = {**flat_cfg, **data.built_with, "dataset_build_sha256": data.key}
    if cfg.model.llm_checkpoint:  # the base by content: resuming or evaluating against another one is refused
        flat["llm_base_sha256"] = pretrained.fingerprint_sha256(cfg.model.llm_checkpoint)
    state = ckpt.TrainState(model, optimizer, scheduler, order, flat, scaler)
    checkpointer = ckpt.Checkpointer(run_dir / "checkpoints", t.keep_checkpoints, info,
                                     sharded=t.sharding == "fsdp2", async_save=t.checkpoint_async)
    if info.is_main:
        checkpointer.check_space(ckpt.state_bytes(state, memory.optimizer_state_bytes_per_param(t.optimizer)))

    # ---- resume
    resumed_from = None
    if t.resume != "never":
        resumed_from = checkpointer.load(state, None if t.resume == "auto" else t.resume)
        if resumed_from:
            _apply_safe_changes(state, sched_target, state.restored_config or {}, flat)
            dropped = tracking.MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main).truncate_after(state.step)
            log.info("resumed from %s at step %d (epoch %d, %d samples into it); %d later metric records dropped",
                     resumed_from, state.step, order.position.epoch, order.position.offset, dropped)
    flops = sum(memory.flops_per_sample(model_cfg, shape, plan).values())  # the components the task builds
    peak = None
    if device.type == "cuda":
        gpu = memory.device_for_name(torch.cuda.get_device_name(device))
        peak = gpu.peak_flops_bf16 * info.world_size if gpu else None
        log.info("MFU is reported against %s", f"{gpu.name}'s dense bf16 peak x {info.world_size}" if gpu else
                 f"nothing: the peak of {torch.cuda.get_device_name(device)} is unknown (add it to memory.DEVICES)")
    return Setup(cfg, info, run_dir, spec, data, state, checkpointer, sched_target, resumed_from, t_start, flops, peak)


def with_batch(cfg: Config, micro_batch_size: int, grad_accum_steps: int) -> Config:
    """Returns ``cfg`` with a resolved micro-batch and accumulation (``micro_batch_size: auto``)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=micro_batch_size,
                                                              grad_accum_steps=grad_accum_steps))


def probe_preflight(cfg: Config, model_cfg, plan: memory.Plan, shape: memory.BatchShape, data: tasks.TaskData,
                    device: torch.device) -> Optional[memory.ProbeResult]:
    """On the GPU, before the model is built: measures the plan with :func:`memory.probe` (two real
    steps of depth-reduced copies of the model on a real micro-batch, extrapolated in depth) and
    refuses it when the probe's peak reserved memory + CUDA context (+ DDP's gradient buckets)
    exceeds the device's usable memory. Adapter, FSDP2 and offload plans are left to the
    analytical estimate (the probe builds the plain model).

    Raises:
        memory.MemoryBudgetError: the probe says the plan does not fit (unless ``force_plan``).
    """
    if plan.llm_adapter != "none" or plan.sharding == "fsdp2" or plan.cpu_offload != "none":
        log.info("preflight probe skipped for plan '%s' (it builds the plain model on one device); the analytical "
                 "estimate decides", plan.name)
        return None
    t = cfg.train
    items = [data.train[i % len(data.train)] for i in range(t.micro_batch_size)]
    batch = to_device(data.collate(items), device, input_dtype(t.precision))
    one_device = dataclasses.replace(plan, sharding="none", world_size=1)
    t0 = time.perf_counter()
    result = memory.probe(model_cfg, one_device, batch, device=device, grad_accum_steps=min(t.grad_accum_steps, 2))
    comm = memory.estimate(model_cfg, plan, shape, hardware_for(cfg)).device["communication"]
    need = result.peak_reserved + memory.CUDA_CONTEXT_BYTES + comm
    total = torch.cuda.get_device_properties(device).total_memory
    usable = memory.DEVICE_LIMIT * total
    log.info("preflight probe on %s (%.1f s, %d depth-reduced runs): peak %.2f GB allocated, %.2f GB reserved; "
             "with CUDA context%s %.2f GB of %.0f GB usable (%.0f%% of %.0f GB)", result.device,
             time.perf_counter() - t0, len(result.runs), result.peak_allocated / 1e9, result.peak_reserved / 1e9,
             " and DDP buckets" if comm else "", need / 1e9, usable / 1e9, 100 * memory.DEVICE_LIMIT, total / 1e9)
    if need > usable:
        msg = (f"the memory probe on {result.device} says plan '{plan.name}' with micro-batch {t.micro_batch_size} "
               f"needs {need / 1e9:.2f} GB per device > {usable / 1e9:.1f} GB usable: lower micro_batch_size, turn on "
               f"activation_checkpointing or use 8-bit AdamW (see 02_memory_budget)")
        if not cfg.hardware.force_plan:
            raise memory.MemoryBudgetError(msg)
        log.warning("%s — training anyway because force_plan is set", msg)
    return result


def _apply_safe_changes(state: ckpt.TrainState, sched_target, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Applies the optimisation keys that may change on resume, and logs each change."""
    changed = ckpt.changed_safe_keys(saved, current)
    if not changed:
        return
    log.warning("resuming with changed settings (allowed; structural keys are not): %s",
                ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    if "learning_rate" in changed:
        old, new = changed["learning_rate"]
        scale = new / old if old else 1.0
        sched = state.scheduler
        if hasattr(sched, "base_lrs"):
            sched.base_lrs = [b * scale for b in sched.base_lrs]
        for group in sched_target.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] *= scale
        if hasattr(sched, "_last_lr"):
            sched._last_lr = [g["lr"] for g in sched_target.param_groups]


def train(cfg: Config, data_dir: Optional[str | Path] = None) -> TrainResult:
    """Trains (or continues training) the run in ``cfg.run.run_dir``; returns how it ended.

    Raises:
        DatasetNotBuilt: notebook 01 has not built the run's dataset.
        memory.MemoryBudgetError: the plan does not fit the configured hardware (before allocating).
        ckpt.CheckpointError: see :func:`setup`.
        astrobio_lib.fsutil.RunLockedError: another training process uses this run folder.
        astrobio_lib.fsutil.DiskFullError: a checkpoint write ran out of space (the previous one is valid).
        astrobio_lib.data.validate.DataValidationError: the dataset has fatal findings.
    """
    run_dir = usable_folder(cfg.run.run_dir, "products")
    usable_folder(run_dir / "checkpoints", "checkpoints")
    info = distributed.init(cfg.train.sharding)
    restore_logging = tracking.setup_logging(run_dir, info.rank)
    lock = RunLock(run_dir, "train.lock", "training process") if info.is_main else None
    try:
        if lock is not None:
            lock.acquire()
        with Preemption() as preempt:
            if not preempt.installed:
                log.info("not on the main thread: SIGTERM/SIGINT will not be turned into a checkpoint")
            s = setup(cfg, info, Path(data_dir) if data_dir else None)
            try:
                return run_loop(s, preempt)
            finally:
                s.checkpointer.close()
    finally:
        if lock is not None and lock.held:
            lock.release()
        restore_logging()


class _Lookahead(torch.utils.data.Sampler):
    """Yields the micro-batch indices the training order will produce next, from a copy of its
    position: the loader can collate ahead without advancing the order that a checkpoint saves.
    With ``keyed`` (a dataset whose items depend on the epoch, e.g. fresh noise per use) it yields
    ``(epoch, index)`` pairs."""

    def __init__(self, order: ResumableOrder, max_epochs: int, keyed: bool = False):
        self.order, self.max_epochs, self.keyed = copy.deepcopy(order), max_epochs, keyed
        self.issued: collections.deque[list[int]] = collections.deque()

    def __iter__(self):
        for indices, epoch in self.order.epochs(self.max_epochs):
            self.issued.append(indices)
            yield [(epoch, i) for i in indices] if self.keyed else indices


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore SIGTERM / SIGINT: a preemption that reaches the whole process group must
    not kill them under the step the trainer is finishing (the trainer ends them when it exits)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class InputPipeline:
    """The training input path: a DataLoader over the order's upcoming micro-batches, collated by
    ``num_workers`` worker processes ahead of the step (``prefetch_factor`` 4 per worker; 0 workers:
    collated in this process when needed), in pinned memory on CUDA so ``to_device``'s
    ``non_blocking`` copies overlap the host. Each batch is checked against the indices the real
    order hands out, so a resumed run consumes exactly the samples it would have. A dataset with
    ``keyed_by_epoch`` true is indexed by ``(epoch, index)``."""

    def __init__(self, dataset, collate, order: ResumableOrder, max_epochs: int, num_workers: int, device):
        self.sampler = _Lookahead(order, max_epochs, keyed=bool(getattr(dataset, "keyed_by_epoch", False)))
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=num_workers,
            pin_memory=torch.device(device).type == "cuda", prefetch_factor=4 if num_workers else None,
            worker_init_fn=_ignore_stop_signals if num_workers else None,
            # its own generator: creating the iterator draws a worker seed, which must not advance the
            # global RNG that checkpoints save (a resumed run would otherwise drift from the original)
            generator=torch.Generator().manual_seed(0))
        self._it = iter(self.loader)

    def next(self, indices: list[int]) -> dict[str, Any]:
        batch = next(self._it)
        expected = self.sampler.issued.popleft()
        if expected != indices:  # pragma: no cover - a bug, never data
            raise RuntimeError(f"input pipeline out of step with the data order: prefetched {expected[:4]}…, "
                               f"the order says {indices[:4]}…")
        return batch


def run_loop(s: Setup, preempt: Preemption) -> TrainResult:
    """Runs optimizer steps until a limit or a stop request; returns how training ended."""
    info, state, t = s.info, s.state, s.cfg.train
    model, optimizer, scheduler, scaler = state.model, state.optimizer, state.scheduler, state.scaler
    counters = state.counters
    device, run_dir = info.device, s.run_dir
    metrics = tracking.MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main)
    start_step = state.step
    wandb = tracking.WandbRun(t.wandb_mode, run_dir, dict(state.config), run_dir.name) if info.is_main else None
    elapsed = lambda: counters["elapsed_s"] + time.monotonic() - s.t_start  # noqa: E731
    last_saved = {"step": state.step}
    last_checkpoint: Optional[str] = None

    def save_checkpoint(best: bool = False, blocking: bool = False) -> str:
        counters_now = counters["elapsed_s"]
        counters["elapsed_s"] = elapsed()  # the saved copy carries the time so far
        try:
            return s.checkpointer.save(state, best=best, blocking=blocking)
        finally:
            counters["elapsed_s"] = counters_now
            last_saved["step"] = state.step

    model.train()
    interactive = sys.stderr.isatty() and "PAPERMILL_EXECUTION" not in os.environ
    bar = None
    if interactive and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=t.max_steps, initial=state.step, unit="step")
    stopped = "max_steps"
    divergence_warnings = 0
    last_ckpt_time = time.monotonic()
    window_t, window_samples, window_paused = time.monotonic(), 0, 0.0
    loop_t0, loop_step0 = time.monotonic(), state.step
    milestone = {"decile": (10 * state.step) // max(t.max_steps, 1)}
    stream = state.order.epochs(t.max_epochs)
    inputs = InputPipeline(s.data.train, s.collate, state.order, t.max_epochs, t.num_workers, device)
    counters.setdefault("loss_window", [])
    counters.setdefault("above_median", 0)
    first_step_t = time.monotonic()
    compiled = compile_mod.wanted(t.compile, info.device)
    while state.step < t.max_steps:
        if elapsed() / 3600 >= t.max_hours:
            stopped = "max_hours"
            break
        # gather this step's micro-batches first: the loss weight of each is its share of the step's samples
        micro = [mb for _, mb in zip(range(t.grad_accum_steps), stream, strict=False)]
        if not micro:
            stopped = "max_epochs"
            break
        n_step = sum(len(idx) for idx, _ in micro)
        epoch = micro[-1][1]
        batches = [inputs.next(indices) for indices, _ in micro]
        loss_t = accumulate(model, batches, device, t.precision, scaler, t.sharding)
        if scaler is not None:
            scaler.unscale_(s.sched_target)
        params = [p for p in model.parameters() if p.grad is not None]
        norm_t = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        norm_t = norm_t.full_tensor() if hasattr(norm_t, "full_tensor") else norm_t
        keys = sorted(loss_t)
        # the step's only device-to-host transfer: the losses, this rank's stop request (global in
        # distributed runs) and the gradient norm (nothing is read inside the accumulation loop)
        packed = torch.stack([loss_t[k].double() for k in keys]
                             + [torch.tensor(1.0 if preempt.requested else 0.0, dtype=torch.float64, device=device)])
        if info.distributed:  # log the global step's losses, not rank 0's share
            torch.distributed.all_reduce(packed)
            packed[:-1] /= info.world_size
        packed = torch.cat([packed, norm_t.detach().to(packed.device, torch.float64).reshape(1)]).cpu()
        sums = {k: float(v) for k, v in zip(keys, packed[:-2], strict=True)}
        stop_requested = float(packed[-2]) > 0
        grad_norm = float(packed[-1])
        finite = math.isfinite(sums["loss"]) and math.isfinite(grad_norm)
        if finite:
            if scaler is not None:
                scaler.step(s.sched_target)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            counters["nonfinite_in_a_row"] = 0
        else:
            counters["skipped"] += 1
            counters["nonfinite_in_a_row"] += 1
            log.warning("step %d: non-finite loss (%s) or gradient norm (%s): step skipped (%d in a row)",
                        state.step + 1, sums["loss"], grad_norm, counters["nonfinite_in_a_row"])
        optimizer.zero_grad(set_to_none=True)
        counters["step"] += 1
        if first_step_t is not None:
            log.info("first step in this process: %.1f s%s", time.monotonic() - first_step_t,
                     " (includes compiling the regions)" if compiled else "")
            first_step_t = None
        counters["samples"] += n_step * info.world_size
        window_samples += n_step * info.world_size
        step = state.step
        record = {"step": step, "epoch": epoch, **{k: round(v, 6) for k, v in sums.items()},
                  "lr": s.sched_target.param_groups[0]["lr"], "grad_norm": grad_norm, "finite": finite,
                  "samples": counters["samples"], "elapsed_s": round(elapsed(), 3)}
        metrics.write(record)
        if wandb:
            wandb.log(record, step)
        if bar is not None:
            bar.update(1)
        if step % t.log_every_steps == 0 or step == t.max_steps:
            now = time.monotonic()
            # samples/s over the training steps of the window (validation and checkpoint time left out, so the
            # rate does not swing with them); the ETA from this process's average time per step, everything
            # included (it does not jump when a window held a validation)
            rate = window_samples / max(now - window_t - window_paused, 1e-9)
            eta = (t.max_steps - step) * (now - loop_t0) / max(1, step - loop_step0)
            decile = (10 * step) // max(t.max_steps, 1)
            is_milestone = decile > milestone["decile"] or step == t.max_steps
            milestone["decile"] = max(decile, milestone["decile"])
            achieved = rate * s.flops_per_sample
            util = memory.mfu(rate, s.flops_per_sample, s.peak_flops)
            units = [f"{rate:.1f} samples/s"]
            if s.data.text_len:  # tokens only for a task with text
                units.append(f"{rate * s.data.text_len:.0f} tokens/s")
            if device.type == "cuda":  # model FLOP/s and MFU mean something against a GPU's peak only
                units.append(f"{achieved / 1e12:.2f} model TFLOP/s | MFU "
                             + (f"{100 * util:.1f}%" if util is not None else "n/a (unknown GPU)"))
            log.info("step %d/%d | epoch %d | loss %.4f | %s %.4f | lr %.2e | grad norm %.3f | %s | ETA %.0f s", step,
                     t.max_steps, epoch, sums["loss"], s.spec.headline_label, s.spec.headline(sums), record["lr"],
                     grad_norm, " | ".join(units), eta, extra={"milestone": is_milestone})
            metrics.write({"step": step, "samples_per_s": rate,
                           **({"tokens_per_s": rate * s.data.text_len} if s.data.text_len else {}),
                           **({"model_tflops_per_s": achieved / 1e12} if device.type == "cuda" else {}),
                           **({"mfu": util} if util is not None else {})})
            window_t, window_samples, window_paused = now, 0, 0.0
        if step % t.memory_every_steps == 0:
            stats = tracking.memory_stats()
            metrics.write({"step": step, **stats})
            for alert in tracking.memory_alerts(stats, t.memory_alert_fraction):
                log.warning("memory alert at step %d: %s", step, alert)

        # ---- stop requests: preemption first (the pod is going away), then the loss guards
        if stop_requested:
            reason = preempt.reason or "a stop request on another rank"
            last_checkpoint = _checkpoint_for_preemption(s, save_checkpoint, reason, last_saved["step"])
            stopped = "interrupted"
            break
        if counters["nonfinite_in_a_row"] >= t.nan_patience:
            last_checkpoint = save_checkpoint(blocking=True)
            stopped = "non_finite"
            log.error("stopping: %d consecutive non-finite steps (lower learning_rate, check the data report); "
                      "checkpoint %s", counters["nonfinite_in_a_row"], last_checkpoint)
            break
        median = _divergence(counters, sums["loss"], finite, t.divergence_factor, t.divergence_patience)
        if median is not None:
            divergence_warnings += 1
            log.warning("step %d: loss %.4g has been above %.0fx its running median (%.4g) for %d steps: the run is "
                        "diverging — lower learning_rate (safe to change on resume) or set grad_clip",
                        step, sums["loss"], t.divergence_factor, median, t.divergence_patience)
            metrics.write({"step": step, "divergence": True, "loss_running_median": median})
            if t.divergence_stop:
                last_checkpoint = save_checkpoint(blocking=True)
                stopped = "diverged"
                break
        improved = False
        paused_from = time.monotonic()
        if step % t.val_every_steps == 0 and len(s.data.val):
            val = validate(model, s.data.val, s.collate, t.micro_batch_size, device, t.precision)
            metrics.write({"step": step, **val})
            score = s.spec.headline(val, "val_")
            counters["last_val"] = score
            if counters["best_val"] is None or score < counters["best_val"]:
                counters["best_val"], counters["vals_without_improvement"], improved = score, 0, True
                counters["best_step"] = step
            else:
                counters["vals_without_improvement"] += 1
            log.info("step %d: validation loss %.4f, %s %.4f%s", step, val["val_loss"], s.spec.headline_label, score,
                     " (best)" if improved else f" ({counters['vals_without_improvement']} without improvement)")
        due = (step % t.checkpoint_every_steps == 0 or improved
               or time.monotonic() - last_ckpt_time >= 60 * t.checkpoint_every_minutes)
        if due:
            last_checkpoint = save_checkpoint(best=improved)
            last_ckpt_time = time.monotonic()
        window_paused += time.monotonic() - paused_from
        if counters["vals_without_improvement"] >= t.early_stopping_patience:
            stopped = "early_stopping"
            break
    if bar is not None:
        bar.close()
    if state.step > last_saved["step"] and stopped != "interrupted":  # the final state, so a rerun continues
        last_checkpoint = save_checkpoint(blocking=True)
    s.checkpointer.wait()
    total = elapsed()
    log.info("training ended (%s) at step %d after %.1f s in this process; %d steps skipped as non-finite; "
             "checkpoint stall %.2f s (%.2f%% of this process's time)", stopped, state.step,
             time.monotonic() - s.t_start, counters["skipped"], s.checkpointer.stall_s,
             100 * s.checkpointer.stall_s / max(time.monotonic() - s.t_start, 1e-9), extra={"milestone": True})
    if wandb:
        wandb.finish()
    result = TrainResult(start_step, state.step, stopped, s.resumed_from, last_checkpoint, counters["best_val"],
                         counters["skipped"], total, [e["file"] for e in s.checkpointer.entries()],
                         round(s.checkpointer.stall_s, 3), divergence_warnings,
                         preempt.reason if stopped == "interrupted" else None, t.micro_batch_size, t.grad_accum_steps,
                         s.spec.name, counters.get("best_step"), counters.get("last_val"),
                         counters["vals_without_improvement"])
    if info.is_main:
        atomic_write(run_dir / "train_result.json", json.dumps(result.to_dict(), indent=2))
    distributed.barrier(info)
    return result


def _checkpoint_for_preemption(s: Setup, save_checkpoint, reason: str, last_saved_step: int) -> Optional[str]:
    """Writes the preemption checkpoint when it fits in the grace period; returns its path."""
    t = s.cfg.train
    expected = s.checkpointer.last_save_s
    if s.state.step == last_saved_step:
        log.warning("%s at step %d: the checkpoint of this step is already written; exiting", reason, s.state.step)
        s.checkpointer.wait()
        latest = s.checkpointer.latest_path()
        return str(latest) if latest else None
    if expected > t.preempt_grace_s:
        log.error("%s at step %d: a checkpoint takes ~%.1f s, more than preempt_grace_s=%.0f s — not attempting one; "
                  "the next run resumes from step %d", reason, s.state.step, expected, t.preempt_grace_s,
                  last_saved_step)
        return None
    t0 = time.monotonic()
    path = save_checkpoint(blocking=True)
    log.warning("%s: finished step %d, checkpoint %s written in %.1f s; exiting (run the same command to continue)",
                reason, s.state.step, path, time.monotonic() - t0)
    return path


def _divergence(counters: dict[str, Any], loss: float, finite: bool, factor: float, patience: int) -> Optional[float]:
    """Tracks the loss against its running median; returns the median when the loss has stayed above
    ``factor`` x median for ``patience`` consecutive steps (once per episode), else None."""
    window: list[float] = counters["loss_window"]
    if not finite:
        return None
    median = statistics.median(window) if len(window) >= 10 else None
    above = median is not None and median > 0 and loss > factor * median
    counters["above_median"] = counters["above_median"] + 1 if above else 0
    if not above:  # a diverging loss must not drag its own baseline up
        window.append(loss)
        del window[:-DIVERGENCE_WINDOW]
    return median if counters["above_median"] == patience else None
