"""The training loop: one function, read top to bottom.

``train(cfg)`` builds (or reuses) the run's dataset, asks the memory estimator whether the plan
fits (before allocating the model), builds model / optimizer / schedule, resumes from the newest
valid checkpoint when there is one, and then repeats: take ``grad_accum_steps`` micro-batches,
forward + backward each with its share of the step's samples as loss weight, clip, guard against
NaN/Inf, step, log, validate, checkpoint — until a limit (steps, epochs, wall-clock hours, early
stopping, or K non-finite steps in a row) ends it. Run the same thing again and it continues.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from astrobio_lib import config, memory, tracking
from astrobio_lib.config import Config
from astrobio_lib.data.loader import Collate, PlanetDataset
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train import distributed
from astrobio_lib.train.data_order import ResumableOrder
from astrobio_lib.train.optim import build_optimizer, build_scheduler, optimizer_for_groups, param_groups

log = logging.getLogger("astrobio.train")

# Changing any of these between a checkpoint and a resumed run would make the continuation a
# different experiment: refuse and list them. (max_steps, intervals, limits may change.)
STRUCTURAL_KEYS = ("seed", "model_preset", "micro_batch_size", "grad_accum_steps", "learning_rate",
                   "precision", "optimizer", "activation_checkpointing", "sharding", "cpu_offload",
                   "llm_adapter", "schedule", "warmup_steps", "weight_decay", "text_max_len", "n_planets",
                   "catalog_source", "climate_domain", "metabolic_model", "val_fraction", "test_fraction", "nproc")


@dataclass
class TrainResult:
    start_step: int
    step: int
    stopped_because: str
    resumed_from: Optional[str]
    last_checkpoint: Optional[str]
    best_val: Optional[float]
    skipped_steps: int
    elapsed_s: float
    checkpoints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (the VAE's noise and PyG's negative sampling draw from them)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def ensure_dataset(cfg: Config, info: distributed.DistInfo) -> Path:
    """Returns the run's data folder, building it (rank 0) when missing or out of date."""
    from astrobio_lib.data import catalog
    from astrobio_lib.data.build import build_dataset

    data_dir = Path(cfg.run.run_dir) / "data"
    if info.is_main:
        planets, prov = catalog.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path, cache_dir=data_dir)
        build_dataset(planets, prov, cfg.data, cfg.run.seed, data_dir)
    distributed.barrier(info)
    return data_dir


def autocast_for(precision: str, device: torch.device):
    """bf16 autocast for bf16-mixed, fp16 for fp16-mixed (CUDA only), none for fp32 / pure bf16.

    Raises:
        ValueError: fp16-mixed without CUDA (a GradScaler needs it).
    """
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16-mixed":
        if device.type != "cuda":
            raise ValueError("precision=fp16-mixed needs CUDA (GradScaler); use fp32 or bf16-mixed on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}


def hardware_for(cfg: Config) -> memory.Hardware:
    return memory.hardware_from(cfg.hardware.gpu_name, cfg.hardware.gpus_per_node, cfg.hardware.gpu_memory_gb,
                                cfg.hardware.host_ram_gb)


def plan_for(cfg: Config, world_size: int) -> memory.Plan:
    t = cfg.train
    return memory.Plan(precision=t.precision, optimizer=t.optimizer, activation_checkpointing=t.activation_checkpointing,
                       sharding=t.sharding, world_size=world_size, cpu_offload=t.cpu_offload, llm_adapter=t.llm_adapter)


def accumulate(model, batches: list[dict[str, Any]], device, precision: str, scaler=None,
               sharding: str = "none") -> dict[str, float]:
    """Forward + backward over the micro-batches of one optimizer step; returns the step's losses.

    Each micro-batch's loss is weighted by its share of the step's samples, so k micro-batches of
    m give the gradient of one batch of k*m for per-sample-mean losses, and a short final
    micro-batch counts for what it holds. Gradients are synchronised only on the last one.
    """
    n_step = sum(int(b["catalog"].shape[0]) for b in batches)
    sums: dict[str, float] = {}
    for i, batch in enumerate(batches):
        batch = to_device(batch, device)
        weight = int(batch["catalog"].shape[0]) / n_step
        with distributed.gradient_sync(model, sharding, sync=i == len(batches) - 1):
            with autocast_for(precision, device):
                out = model(batch)
            loss = out["loss"] * weight
            (scaler.scale(loss) if scaler else loss).backward()
        for k, v in out.items():
            if k.startswith("loss"):
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * weight
    return sums


@torch.no_grad()
def validate(model, dataset: PlanetDataset, collate: Collate, micro_batch: int, device, precision: str) -> dict[str, float]:
    """Returns mean losses over the validation split (every rank runs all of it: FSDP needs all)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for start in range(0, len(dataset), micro_batch):
        items = [dataset[i] for i in range(start, min(len(dataset), start + micro_batch))]
        batch = to_device(collate(items), device)
        with autocast_for(precision, device):
            out = model(batch)
        for k in ("loss", "loss_habitability"):
            sums[k] = sums.get(k, 0.0) + float(out[k]) * len(items)
        n += len(items)
    model.train(was_training)
    return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}


def train(cfg: Config) -> TrainResult:
    """Trains (or continues training) the run in ``cfg.run.run_dir``; returns how it ended.

    Raises:
        memory.MemoryBudgetError: the plan does not fit the configured hardware (before allocating).
        ckpt.CheckpointError: the checkpoint to resume belongs to another configuration, or the
            ``resume`` path cannot be loaded.
        astrobio_lib.data.validate.DataValidationError: the dataset has fatal findings.
    """
    t = cfg.train
    if t.llm_adapter != "none":
        # budgeted by the memory estimator, not built here: training the full LLM instead would
        # silently change the experiment
        raise config.ConfigError(f"llm_adapter={t.llm_adapter!r}: LoRA/QLoRA adapters are budgeted by the memory "
                                 f"estimator but not implemented in the trainer yet; use llm_adapter: none")
    run_dir = Path(cfg.run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = distributed.init()
    tracking.setup_logging(run_dir, info.rank)
    t_start = time.monotonic()
    device = info.device
    flat = cfg.flat()
    seed_everything(cfg.run.seed + info.rank)  # a resumed run replaces these states from its checkpoint

    # ---- data (built once per run folder; reused afterwards)
    data_dir = ensure_dataset(cfg, info)
    train_ds, val_ds = PlanetDataset(data_dir, "train"), PlanetDataset(data_dir, "val", validate=False)
    collate = Collate(train_ds.graphs)
    if train_ds.synthetic:
        log.warning("training on a SYNTHETIC catalog: results say nothing about real planets")

    # ---- preflight: refuse a plan that does not fit, before allocating anything
    model_cfg = get_preset(cfg.model.model_preset, activation_checkpointing=t.activation_checkpointing)
    plan = plan_for(cfg, info.world_size)
    hardware = hardware_for(cfg)
    est = memory.preflight(model_cfg, plan, memory.BatchShape(t.micro_batch_size, cfg.data.text_max_len,
                                                              t.grad_accum_steps), hardware)
    log.info("preflight: plan '%s' on %s: %.2f GB per device, %.1f GB host — fits", plan.name, hardware.name,
             est.device_total / 1e9, est.host_total / 1e9)

    # ---- model, optimizer, schedule
    model = build_model(model_cfg, seed=cfg.run.seed).to(device)
    if t.precision == "bf16":
        model = model.to(torch.bfloat16)
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
    order = ResumableOrder(len(train_ds), t.micro_batch_size, cfg.run.seed, info.world_size, info.rank)
    metrics = tracking.MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main)
    ckpt_dir = run_dir / "checkpoints"
    sharded = t.sharding == "fsdp2" and info.distributed

    # ---- resume
    counters = {"step": 0, "samples": 0, "skipped": 0, "nonfinite_in_a_row": 0, "elapsed_s": 0.0,
                "best_val": None, "vals_without_improvement": 0}
    resumed_from = None
    if t.resume != "never":
        found = _load_checkpoint(ckpt_dir, None if t.resume == "auto" else t.resume, sharded, model, optimizer, info)
        if found is not None:
            state, resumed_from = found
            diff = ckpt.incompatible_keys(state["config"], flat, STRUCTURAL_KEYS)
            if diff:
                raise ckpt.CheckpointError(
                    f"checkpoint {resumed_from} was written with another configuration: "
                    + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                    + ". Restore those values, or start a new run folder (or resume: never).")
            if not sharded:
                distributed.unwrap(model).load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            order.load(state["data_order"])
            counters.update(state["counters"])
            ckpt.set_rng_state(state["rng"])
            dropped = metrics.truncate_after(counters["step"])
            log.info("resumed from %s at step %d (epoch %d, %d samples into it); %d later metric records dropped",
                     resumed_from, counters["step"], order.position.epoch, order.position.offset, dropped)
    start_step = counters["step"]
    wandb = tracking.WandbRun(t.wandb_mode, run_dir, {k: v for k, v in flat.items()}, run_dir.name) \
        if info.is_main else None

    last_saved = {"step": counters["step"]}

    def save_checkpoint(best: bool = False) -> str:
        last_saved["step"] = counters["step"]
        state = {"config": flat, "counters": dict(counters, elapsed_s=counters["elapsed_s"] + time.monotonic() - t_start),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                 "data_order": order.state(), "rng": ckpt.rng_state()}
        if sharded:
            path = str(ckpt_dir / f"step_{counters['step']:08d}.dcp")
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            distributed.save_sharded(path, model, optimizer, state, info)
            if info.is_main:
                ckpt.record(ckpt_dir, Path(path).name, counters["step"], t.keep_checkpoints, best, sharded=True)
            return path
        state.update(model=distributed.unwrap(model).state_dict(), optimizer=optimizer.state_dict())
        if info.is_main:
            return str(ckpt.save(ckpt_dir, counters["step"], state, keep=t.keep_checkpoints, best=best))
        return ""

    # ---- the loop
    model.train()
    interactive = sys.stderr.isatty() and "PAPERMILL_EXECUTION" not in os.environ
    bar = None
    if interactive and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=t.max_steps, initial=counters["step"], unit="step")
    stopped = "max_steps"
    last_ckpt_time = time.monotonic()
    last_checkpoint: Optional[str] = None
    window_t, window_samples = time.monotonic(), 0
    stream = order.epochs(t.max_epochs)
    while counters["step"] < t.max_steps:
        elapsed_h = (counters["elapsed_s"] + time.monotonic() - t_start) / 3600
        if elapsed_h >= t.max_hours:
            stopped = "max_hours"
            break
        # gather this step's micro-batches first: the loss weight of each is its share of the step's samples
        micro = [mb for _, mb in zip(range(t.grad_accum_steps), stream, strict=False)]
        if not micro:
            stopped = "max_epochs"
            break
        n_step = sum(len(idx) for idx, _ in micro)
        epoch = micro[-1][1]
        batches = [collate([train_ds[j] for j in indices]) for indices, _ in micro]
        sums = accumulate(model, batches, device, t.precision, scaler, t.sharding)
        if info.distributed:  # log the global step's losses, not rank 0's share
            keys = sorted(sums)
            packed = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
            torch.distributed.all_reduce(packed)
            sums = {k: float(v) / info.world_size for k, v in zip(keys, packed, strict=True)}
        if scaler is not None:
            scaler.unscale_(sched_target)
        params = [p for p in model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        finite = math.isfinite(sums["loss"]) and math.isfinite(grad_norm)
        if finite:
            if scaler is not None:
                scaler.step(sched_target)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            counters["nonfinite_in_a_row"] = 0
        else:
            counters["skipped"] += 1
            counters["nonfinite_in_a_row"] += 1
            log.warning("step %d: non-finite loss (%s) or gradient norm (%s): step skipped (%d in a row)",
                        counters["step"] + 1, sums["loss"], grad_norm, counters["nonfinite_in_a_row"])
        optimizer.zero_grad(set_to_none=True)
        counters["step"] += 1
        counters["samples"] += n_step * info.world_size
        window_samples += n_step * info.world_size
        step = counters["step"]
        record = {"step": step, "epoch": epoch, **{k: round(v, 6) for k, v in sums.items()},
                  "lr": sched_target.param_groups[0]["lr"], "grad_norm": grad_norm, "finite": finite,
                  "samples": counters["samples"],
                  "elapsed_s": round(counters["elapsed_s"] + time.monotonic() - t_start, 3)}
        metrics.write(record)
        if wandb:
            wandb.log(record, step)
        if bar is not None:
            bar.update(1)
        if step % t.log_every_steps == 0 or step == t.max_steps:
            now = time.monotonic()
            rate = window_samples / max(now - window_t, 1e-9)
            eta = (t.max_steps - step) * (now - window_t) / max(1, window_samples / (n_step * info.world_size))
            log.info("step %d/%d | epoch %d | loss %.4f | habitability %.4f | lr %.2e | grad norm %.3f | "
                     "%.1f samples/s | ETA %.0f s", step, t.max_steps, epoch, sums["loss"],
                     sums.get("loss_habitability", float("nan")), record["lr"], grad_norm, rate, eta)
            metrics.write({"step": step, "samples_per_s": rate, "tokens_per_s": rate * cfg.data.text_max_len})
            window_t, window_samples = now, 0
        if step % t.memory_every_steps == 0:
            stats = tracking.memory_stats()
            metrics.write({"step": step, **stats})
            for alert in tracking.memory_alerts(stats, t.memory_alert_fraction):
                log.warning("memory alert at step %d: %s", step, alert)
        if counters["nonfinite_in_a_row"] >= t.nan_patience:
            last_checkpoint = save_checkpoint()
            stopped = "non_finite"
            log.error("stopping: %d consecutive non-finite steps (lower learning_rate, check the data report); "
                      "checkpoint %s", counters["nonfinite_in_a_row"], last_checkpoint)
            break
        improved = False
        if step % t.val_every_steps == 0 and len(val_ds):
            val = validate(model, val_ds, Collate(val_ds.graphs), t.micro_batch_size, device, t.precision)
            metrics.write({"step": step, **val})
            score = val["val_loss_habitability"]
            if counters["best_val"] is None or score < counters["best_val"]:
                counters["best_val"], counters["vals_without_improvement"], improved = score, 0, True
            else:
                counters["vals_without_improvement"] += 1
            log.info("step %d: validation loss %.4f, habitability BCE %.4f%s", step, val["val_loss"], score,
                     " (best)" if improved else f" ({counters['vals_without_improvement']} without improvement)")
        due = (step % t.checkpoint_every_steps == 0 or improved
               or time.monotonic() - last_ckpt_time >= 60 * t.checkpoint_every_minutes)
        if due:
            last_checkpoint = save_checkpoint(best=improved)
            last_ckpt_time = time.monotonic()
        if counters["vals_without_improvement"] >= t.early_stopping_patience:
            stopped = "early_stopping"
            break
    if bar is not None:
        bar.close()
    if counters["step"] > last_saved["step"]:  # the final state, so a rerun continues from it
        last_checkpoint = save_checkpoint()
    elapsed = counters["elapsed_s"] + time.monotonic() - t_start
    log.info("training ended (%s) at step %d after %.1f s in this process; %d steps skipped as non-finite",
             stopped, counters["step"], time.monotonic() - t_start, counters["skipped"])
    if wandb:
        wandb.finish()
    result = TrainResult(start_step, counters["step"], stopped, str(resumed_from) if resumed_from else None,
                         last_checkpoint, counters["best_val"], counters["skipped"], elapsed,
                         [e["file"] for e in ckpt.read_manifest(ckpt_dir)])
    if info.is_main:
        (run_dir / "train_result.json").write_text(json.dumps(result.to_dict(), indent=2))
    distributed.barrier(info)
    return result


def _load_checkpoint(ckpt_dir: Path, path: Optional[str], sharded: bool, model, optimizer,
                     info: distributed.DistInfo) -> Optional[tuple[dict[str, Any], str]]:
    if not sharded:
        found = ckpt.load_latest(ckpt_dir, path)
        return (found[0], str(found[1])) if found else None
    candidates = [path] if path else [str(ckpt_dir / e["file"]) for e in
                                      sorted(ckpt.read_manifest(ckpt_dir), key=lambda e: e["step"], reverse=True)]
    for cand in candidates:
        try:
            extra = distributed.load_sharded(cand, model, optimizer, info)
            return extra, cand
        except Exception as exc:
            log.warning("sharded checkpoint %s unusable (%s): trying the previous one", cand, exc)
    return None
