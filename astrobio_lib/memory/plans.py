"""The plan search: every plan relevant to a model on a machine (fits? runnable? how fast?), the
recommendation, the preflight refusal, and ``micro_batch_size: auto``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Optional

from astrobio_lib.memory.estimate import (
    Estimate,
    MemoryBudgetError,
    TimeEstimate,
    check_fit,
    estimate,
    time_per_step,
)
from astrobio_lib.memory.formulas import ADAPTERS, OFFLOADS, BatchShape, Plan
from astrobio_lib.memory.hardware import GB, Hardware


def not_runnable(plan: Plan, has_llm_checkpoint: bool = False) -> Optional[str]:
    """Returns why the trainer cannot run ``plan`` with this configuration, or None when it can:
    LoRA / QLoRA adapt a pretrained LLM (``llm_checkpoint``) and are not combined with FSDP2."""
    if plan.llm_adapter != "none" and not has_llm_checkpoint:
        return f"not runnable here: {plan.llm_adapter} needs llm_checkpoint (a pretrained LLM to adapt)"
    if plan.llm_adapter != "none" and plan.sharding == "fsdp2":
        return f"not runnable: {plan.llm_adapter} with FSDP2 is not supported (use ddp)"
    return None


# --------------------------------------------------------------------------- plan search


@dataclass
class PlanVerdict:
    estimate: Estimate
    fits: bool
    reasons: list[str]
    time: Optional[TimeEstimate]
    why_not_runnable: Optional[str] = None

    def row(self, hardware: Hardware) -> dict[str, Any]:
        cap = hardware.device.memory_bytes if hardware.device else float("nan")
        return {"plan": self.estimate.plan.name, "fits": self.fits,
                "runnable": self.runnable,
                "per_device_GB": round(self.estimate.device_total / GB, 2),
                "device_use_%": round(100 * self.estimate.device_total / cap, 1) if hardware.device else "n/a (CPU)",
                "host_GB": round(self.estimate.host_total / GB, 1),
                "step_s": round(self.time.step_s, 2) if self.time else "n/a on CPU",
                "why_not": "; ".join(self.reasons + ([self.why_not_runnable] if self.why_not_runnable else []))}

    @property
    def runnable(self) -> bool:
        """The trainer can run this plan with this configuration (see :func:`not_runnable`)."""
        return self.why_not_runnable is None


def plans(cfg, hardware: Hardware, batch: BatchShape, mfu: float = 0.35,
          adapters: Optional[tuple[str, ...]] = None, has_llm_checkpoint: bool = False) -> list[PlanVerdict]:
    """Returns a verdict for every plan relevant to the model and the hardware: fitting plans the
    trainer can run first, fastest first (smallest first on CPU, where no step time is estimated),
    then fitting plans that are not runnable with this configuration (adapters without
    ``llm_checkpoint``), then the rejected ones with the reason. LoRA / QLoRA plans (``adapters``,
    default all) are considered only for a model with an LLM."""
    adapters = (adapters if adapters is not None else ADAPTERS) if cfg.has("text") else ("none",)
    world = hardware.n_devices
    if hardware.device is None:  # CPU: no GPU precisions, sharding or offload; ranked by memory
        precisions, shardings, offloads = ("fp32", "bf16-mixed"), ("none",), ("none",)
    else:
        precisions = ("bf16-mixed", "bf16") if hardware.device.bf16 else ("fp16-mixed",)
        shardings = ("ddp", "fsdp2") if world > 1 else ("none", "fsdp2")
        offloads = OFFLOADS
    out = []
    for prec, opt, ckpt, shard, offload, adapter in itertools.product(
            precisions, ("adamw", "adamw8bit"), (False, True), shardings, offloads, adapters):
        if offload == "params_optimizer" and shard != "fsdp2":
            continue
        plan = Plan(precision=prec, optimizer=opt, activation_checkpointing=ckpt, sharding=shard,
                    world_size=world, cpu_offload=offload, llm_adapter=adapter)
        est = estimate(cfg, plan, batch, hardware)
        reasons = check_fit(est, hardware)
        t = time_per_step(est, hardware, mfu) if hardware.device else None
        out.append(PlanVerdict(est, not reasons, reasons, t, not_runnable(plan, has_llm_checkpoint)))
    out.sort(key=lambda v: (not v.fits, not v.runnable, v.time.step_s if v.time else 0, v.estimate.device_total))
    return out


def recommend(verdicts: list[PlanVerdict], configured: Plan, hardware: Hardware) -> str:
    """Returns one or two sentences on which plan to use: the best plan that fits *and* that the
    trainer can run (fastest on a GPU, smallest per device on CPU, where no step time is
    estimated), and — when it is not the configured plan — how the two differ and what each
    costs, so the reader can judge whether to switch."""
    on_gpu = hardware.device is not None
    runnable = [v for v in verdicts if v.fits and v.runnable]
    waiting = [v for v in verdicts if v.fits and not v.runnable]
    later = (f" ({len(waiting)} more fit but are not runnable with this configuration, e.g. "
             f"{waiting[0].estimate.plan.name}: {waiting[0].why_not_runnable})" if waiting else "")
    if not runnable:
        return f"no plan the trainer can run fits {hardware.name}{later}."

    def cost(v: PlanVerdict) -> str:
        mem = f"{v.estimate.device_total / GB:.2f} GB per device, host {v.estimate.host_total / GB:.1f} GB"
        return f"{v.time.step_s:.2f} s/step, {mem}" if on_gpu and v.time else mem

    fastest = runnable[0]
    mine = next((v for v in verdicts if v.estimate.plan.name == configured.name), None)
    if not on_gpu and mine is not None and mine.fits and mine.runnable:
        # on a CPU the smallest plan is no better: RAM is rarely the limit, and bf16 autocast is
        # emulated there (slower than fp32); a plan is chosen for its memory only when it must be
        return (f"keep the configured plan '{configured.name}' ({cost(mine)}): it fits this CPU; a smaller plan "
                f"would only matter if memory were short (bf16 on a CPU is slower than fp32){later}.")
    if (on_gpu and mine is not None and mine.fits and mine.runnable and mine.time and fastest.time
            and mine.time.step_s <= 1.05 * fastest.time.step_s):
        same = mine is fastest
        return (f"keep the configured plan '{configured.name}' ({cost(mine)}): "
                + ("it is the fastest runnable plan that fits" if same else
                   f"it is within 5% of the fastest runnable plan '{fastest.estimate.plan.name}' ({cost(fastest)}), "
                   f"less than the step-time estimate's own uncertainty") + f"{later}.")
    best, criterion = fastest, "smallest (no step time is estimated on CPU)"
    if on_gpu and fastest.time:  # within 5% of the fastest, prefer the simplest plan: no offload, no sharding
        near = [v for v in runnable if v.time and v.time.step_s <= 1.05 * fastest.time.step_s]
        best = min(near, key=lambda v: (v.estimate.plan.cpu_offload != "none", v.estimate.plan.sharding == "fsdp2",
                                        v.estimate.plan.activation_checkpointing, v.time.step_s))
        criterion = "fastest (the simplest within 5% of the fastest)"
    if best.estimate.plan.name == configured.name:
        return f"the configured plan '{configured.name}' is the {criterion} runnable plan that fits ({cost(best)}){later}."
    diffs = [f"{f}: {getattr(configured, f)} → {getattr(best.estimate.plan, f)}"
             for f in ("precision", "optimizer", "activation_checkpointing", "sharding", "cpu_offload", "llm_adapter")
             if getattr(configured, f) != getattr(best.estimate.plan, f)]
    mine_text = (f"the configured '{configured.name}' " + ("fits" if mine.fits else "does not fit")
                 + f" ({cost(mine)})") if mine else f"the configured '{configured.name}' is not in the table"
    return (f"{criterion} runnable plan: '{best.estimate.plan.name}' ({cost(best)}), differing in "
            f"{', '.join(diffs) or 'nothing budgeted'}; {mine_text}{later}.")


def preflight(cfg, plan: Plan, batch: BatchShape, hardware: Hardware, mfu: float = 0.35) -> Estimate:
    """Returns the estimate when ``plan`` fits ``hardware``; refuses it otherwise, before any
    weight is allocated.

    Raises:
        MemoryBudgetError: the plan does not fit; the message lists the estimate by category and
            the fastest plans that do fit (or says that none does).
    """
    est = estimate(cfg, plan, batch, hardware)
    reasons = check_fit(est, hardware)
    if not reasons:
        return est
    breakdown = ", ".join(f"{k} {v / GB:.2f}" for k, v in est.breakdown.items() if v)
    fitting = [v for v in plans(cfg, hardware, batch, mfu) if v.fits][:3]
    alternatives = "; ".join(f"{v.estimate.plan.name} ({v.estimate.device_total / GB:.1f} GB/device)"
                             for v in fitting) or "none: use a smaller model preset or more/larger devices"
    raise MemoryBudgetError(f"plan '{plan.name}' does not fit {hardware.name}: {'; '.join(reasons)}. "
                            f"Estimate per device (GB): {breakdown}. Plans that fit: {alternatives}")


# The seeds' plan: bf16, 8-bit AdamW, gradient checkpointing, FSDP with CPU offload on 2 GPUs,
# micro-batch 1 x accumulation 32 of 512-token sequences.
SEEDS_PLAN = Plan(precision="bf16-mixed", optimizer="adamw8bit", activation_checkpointing=True,
                  sharding="fsdp2", world_size=2, cpu_offload="params_optimizer")
SEEDS_BATCH = BatchShape(micro_batch_size=1, seq_len=512, grad_accum_steps=32)


# --------------------------------------------------------------------------- micro_batch_size: auto


def auto_micro_batch(cfg, plan: Plan, seq_len: int, batch_size: int, hardware: Hardware,
                     graph_nodes: int = 72, graph_edges: int = 455) -> tuple[int, int, str]:
    """Returns (micro-batch, accumulation steps, a sentence saying why) for ``micro_batch_size: auto``:
    the largest micro-batch that divides ``batch_size`` (so the effective batch stays exactly
    ``batch_size`` per process) and whose estimate fits ``hardware`` (:func:`check_fit`: peak
    reserved + CUDA context within 90% of the GPU; on CPU, host memory within 85% of the RAM).

    Raises:
        MemoryBudgetError: not even a micro-batch of 1 fits (the message gives its estimate).
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    divisors = micro_batch_candidates(batch_size)
    tried = []
    for m in divisors:
        est = estimate(cfg, plan, BatchShape(m, seq_len, batch_size // m, graph_nodes, graph_edges), hardware)
        reasons = check_fit(est, hardware)
        if not reasons:
            bigger = (f"; {tried[-1][0]} would need {tried[-1][1] / GB:.2f} GB" if tried else
                      " (the whole batch fits in one micro-batch)")
            where = "per device" if hardware.device else "of host memory"
            return m, batch_size // m, (f"micro_batch_size auto: {m} x {batch_size // m} accumulation = batch_size "
                                        f"{batch_size} on {hardware.name}: the largest divisor of {batch_size} whose "
                                        f"estimate fits ({_fit_need(est, hardware) / GB:.2f} GB {where}{bigger})")
        tried.append((m, _fit_need(est, hardware), reasons))
    raise MemoryBudgetError(f"micro_batch_size auto: not even a micro-batch of 1 fits {hardware.name}: "
                            f"{'; '.join(tried[-1][2])}. Choose a smaller model preset, a shorter text_max_len, "
                            f"activation_checkpointing or another plan (see 02_memory_budget)")


def micro_batch_candidates(batch_size: int, below: Optional[int] = None) -> list[int]:
    """Micro-batches that divide ``batch_size`` exactly (smaller than ``below`` when given), largest first."""
    top = batch_size if below is None else min(batch_size, below - 1)
    return [m for m in range(top, 0, -1) if batch_size % m == 0]


def _fit_need(est: Estimate, hardware: Hardware) -> float:
    return est.device_total if hardware.device is not None else est.host_total + est.device_total
