"""The estimate: bytes per device and on the host, by named term, at the moments of a training step
where the peak can fall; the fit check; the time of a step.

**Peak of a step** (what ``torch.cuda.max_memory_allocated`` reports): not the sum of everything —
gradients, activations and casts never all coexist. :func:`step_phases` counts the live bytes, by
named term, at the four moments where the peak can fall (end of forward, start of backward, end of
the LLM's backward, optimizer step); the estimate's peak is the largest. Terms: ``parameters``,
``optimizer`` (persistent states), ``gradients`` (absent until backward unless a micro-batch
accumulates onto them), ``activations`` (stored for backward), ``autocast_weight_cache`` (the
16-bit copies autocast makes of every weight a matmul/conv uses: cached until autocast exits,
saved by autograd until each op's backward; :func:`~astrobio_lib.memory.formulas.cast_parameters`),
``backward_transients`` (the gradients one layer's backward holds at once, or the loss's logits
gradient), ``optimizer_step_temporaries``, ``communication`` (DDP buckets, FSDP2 gathered units),
``inputs`` (the micro-batch) and ``allocator_rounding`` (blocks rounded up to 512 bytes). Validated
against the H100 allocator peaks in ``tests/data/measurements`` (4 configurations, +1.7% to +6.2%;
``tests/test_memory_cuda.py``), never more than 5% under.

**Allowances** (stated, not fitted): allocator fragmentation 10% of the peak, CUDA context 0.6 GB
per device, 3 GB of host RAM per process, and the dataset held in host RAM. The fit check compares
peak allocated + fragmentation + context (:attr:`Estimate.device_total`) with 90% of the device.

**Time**: FLOPs per step divided by devices x peak x MFU. Offloading adds PCIe traffic (bound at
16 GB/s effective per device) and a host-side optimizer step (bound by host memory bandwidth, 20 GB/s
assumed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from astrobio_lib.memory.formulas import (
    _WEIGHT_BYTES,
    CUDA_CONTEXT_BYTES,
    DEVICE_LIMIT,
    FRAGMENTATION,
    HOST_LIMIT,
    HOST_MEMORY_BANDWIDTH,
    HOST_PROCESS_BYTES,
    PCIE_BYTES_PER_S,
    BatchShape,
    Plan,
    _largest_block_params,
    _largest_parameter,
    _llm_activation_elements,
    _lora_parameters,
    _quantile_map_bytes,
    activation_bytes,
    attention_kernel,
    cast_parameters,
    component_counts,
    flops_per_sample,
    input_bytes,
    optimizer_state_bytes_per_param,
    parameter_inventory,
)
from astrobio_lib.memory.hardware import GB, Hardware


@dataclass
class Estimate:
    plan: Plan
    batch: BatchShape
    device: dict[str, float]  # bytes per device by category
    host: dict[str, float]  # bytes of host RAM by category
    activations_by_component: dict[str, float]
    parameters: dict[str, int]
    trainable_parameters: int
    flops_per_step: float
    tokens_per_step: int
    phases: dict[str, dict[str, float]]  # bytes live per device at each candidate peak moment of a step
    peak_phase: str  # the phase with the most bytes
    overheads: dict[str, float]  # allocator fragmentation and CUDA context (GPU only)

    @property
    def peak(self) -> dict[str, float]:
        """Bytes by named term at the peak of a training step (predicted ``max_memory_allocated``)."""
        return self.phases[self.peak_phase]

    @property
    def peak_allocated(self) -> float:
        return sum(self.peak.values())

    @property
    def peak_reserved(self) -> float:
        """Predicted ``max_memory_reserved``: the peak plus the allocator's fragmentation allowance."""
        return self.peak_allocated + self.overheads.get("allocator_fragmentation", 0.0)

    @property
    def breakdown(self) -> dict[str, float]:
        """The peak's terms and the overheads: what the fit check adds up."""
        return {**self.peak, **self.overheads}

    @property
    def device_total(self) -> float:
        """What one device must hold: peak reserved + CUDA context on a GPU, the peak on a CPU."""
        return self.peak_reserved + self.overheads.get("cuda_context", 0.0)

    def dominant(self) -> tuple[str, float, str]:
        """Returns (term, bytes, what would shrink it) for the largest term at the peak."""
        term, value = max(self.peak.items(), key=lambda kv: kv[1])
        return term, value, SHRINK.get(term, "")

    @property
    def host_total(self) -> float:
        return sum(self.host.values())

    @property
    def measured_comparable(self) -> float:
        """States + stored activations: the quantity :func:`measure` observes on CPU."""
        return sum(self.device[k] for k in ("parameters", "gradients", "optimizer", "master_fp32", "activations"))

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.name, "plan_fields": dataclasses.asdict(self.plan),
                "batch": dataclasses.asdict(self.batch), "device_bytes": self.device,
                "device_total_bytes": self.device_total, "host_bytes": self.host,
                "host_total_bytes": self.host_total, "activations_by_component": self.activations_by_component,
                "parameters": self.parameters, "trainable_parameters": self.trainable_parameters,
                "flops_per_step": self.flops_per_step, "tokens_per_step": self.tokens_per_step,
                "peak_phase": self.peak_phase, "peak_bytes": self.peak, "phases": self.phases,
                "overheads": self.overheads, "peak_allocated_bytes": self.peak_allocated,
                "peak_reserved_bytes": self.peak_reserved}


SHRINK = {
    "activations": "activation checkpointing, a smaller micro-batch or shorter sequences",
    "optimizer": "8-bit AdamW, optimizer offload, FSDP2 sharding, or LoRA/QLoRA (fewer trainable parameters)",
    "gradients": "FSDP2 sharding, or LoRA/QLoRA (no gradients for the frozen base)",
    "parameters": "FSDP2 sharding, parameter offload, or QLoRA (a 4-bit base)",
    "autocast_weight_cache": "activation checkpointing (the casts are dropped at the end of forward) or pure bf16",
    "backward_transients": "a smaller micro-batch or shorter sequences",
    "communication": "smaller FSDP units or fewer prefetched blocks",
    "optimizer_step_temporaries": "a fused or 8-bit optimizer",
}


# --------------------------------------------------------------------------- estimate


def estimate(cfg, plan: Plan, batch: BatchShape, hardware: Optional[Hardware] = None,
             dataset_bytes: float = 1e9) -> Estimate:
    """Returns the memory estimate of training ``cfg`` with ``plan`` on ``batch`` (bytes per
    device and on the host, by category) and its FLOPs per optimizer step. Allocates no weights.

    Raises:
        ValueError: an inconsistent plan (see :class:`Plan`).
    """
    hardware = hardware or Hardware(None)
    inv = parameter_inventory(cfg)
    counts = component_counts(cfg)
    ws = plan.world_size
    shard = ws if plan.sharding == "fsdp2" else 1

    weights = grads = opt = 0.0
    frozen_llm = plan.llm_adapter != "none" and cfg.has("text")
    w_bytes = _WEIGHT_BYTES[plan.precision]
    for comp, pname, n in inv:
        if comp == "llm" and frozen_llm:
            # the frozen base in the compute dtype; QLoRA packs the blocks' linear weights into NF4
            # (0.5 B/param) with double-quantised block scales (1 B per 64 + fp32 per 256 blocks)
            base = 2.0 if plan.precision in ("bf16", "bf16-mixed") else 4.0
            quantised = plan.llm_adapter == "qlora" and ".blocks." in pname and "norm" not in pname
            weights += n * (0.5 + 1 / 64 + 4 / (64 * 256) if quantised else base)
            continue
        weights += n * w_bytes
        grads += n * w_bytes
        opt += n * optimizer_state_bytes_per_param(plan.optimizer, n) + _quantile_map_bytes(plan.optimizer, n)
    trainable = counts["total"] - (counts.get("llm", 0) if frozen_llm else 0)
    if frozen_llm:
        n_lora = _lora_parameters(cfg, plan.lora_rank)
        trainable += n_lora
        weights += n_lora * 4
        grads += n_lora * 4
        opt += n_lora * optimizer_state_bytes_per_param(plan.optimizer, 1 << 20)

    cuda = hardware.device is not None
    acts, recompute = activation_bytes(cfg, plan, batch, cuda)
    device = {"parameters": weights / shard, "gradients": grads / shard, "optimizer": opt / shard,
              "master_fp32": 0.0, "activations": sum(acts.values()), "recompute_peak": recompute}
    host = {"process_overhead": HOST_PROCESS_BYTES * ws, "dataset": dataset_bytes * ws}
    comm = 0.0
    if plan.sharding == "ddp" and ws > 1:
        comm = grads  # DDP gradient buckets (a full copy of the gradients)
    elif plan.sharding == "fsdp2":
        # two unsharded blocks in flight (prefetch) + one block's gradients for reduce-scatter
        largest_block = max(_largest_block_params(cfg), 1)
        compute_bytes = 2 if plan.precision != "fp32" else 4
        comm = 2 * largest_block * compute_bytes + largest_block * 4
    device["communication"] = comm
    if plan.cpu_offload == "optimizer":
        host["optimizer_offload"] = opt  # every rank's shard sits in the same host RAM
        device["optimizer"] = 0.0
    elif plan.cpu_offload == "params_optimizer":
        host["params_grads_optimizer_offload"] = weights + grads + opt
        device["parameters"] = device["gradients"] = device["optimizer"] = 0.0
    phases = step_phases(cfg, plan, batch, device, acts, cuda, n_tensors=len(inv))
    peak_phase = max(phases, key=lambda k: sum(phases[k].values()))
    overheads = {}
    if cuda:
        overheads = {"allocator_fragmentation": FRAGMENTATION * sum(phases[peak_phase].values()),
                     "cuda_context": CUDA_CONTEXT_BYTES}
    fl = flops_per_sample(cfg, batch, plan)
    samples = batch.micro_batch_size * batch.grad_accum_steps * ws
    return Estimate(plan, batch, device, host, acts, counts, trainable, sum(fl.values()) * samples,
                    (batch.seq_len if cfg.has("text") else 0) * samples, phases, peak_phase, overheads)


def step_phases(cfg, plan: Plan, batch: BatchShape, device: dict[str, float], acts: dict[str, float],
                cuda: bool, n_tensors: int = 0) -> dict[str, dict[str, float]]:
    """Returns the bytes live on one device, by named term, at the four moments of a training step
    where the peak can fall (the estimate's peak is the largest):

    - ``forward end``: persistent states (weights, optimizer state; gradients too from the second
      micro-batch of an accumulation on), every stored activation, and autocast's whole cast cache —
      it is cleared only when the autocast region exits, so with checkpointing it still holds the
      recomputed blocks' casts here.
    - ``backward start``: as above with only the casts autograd saved, plus the larger of the loss
      gradient (fp32 logits) and one LLM layer's backward transients (below).
    - ``end of LLM backward``: the LLM runs last in forward, so its backward runs first (the
      autograd engine takes the highest sequence number first); when its first block is
      back-propagated, all gradients exist, the other encoders' activations and casts are still
      stored, and the block's own activations (recomputed under checkpointing), its 16-bit weights
      and its transients are live.
    - ``optimizer step``: weights, gradients and state, plus the optimizer's temporaries (none for
      fused AdamW on CUDA or bitsandbytes' 8-bit kernels; the unfused AdamW on CPU builds
      ``exp_avg_sq.sqrt() / bias_correction`` per tensor, two copies of the largest one).

    One LLM layer's backward transients: the gradients of SwiGLU's gate, up and product (3*I per
    token, compute dtype) and of the fp32 residual stream in and out (2h); with the math or eager
    attention kernel instead the gradients of the probabilities and of the scores (2*a*s per
    token), if larger; in mixed precision plus the 16-bit gradient of the largest weight before it
    is cast and accumulated into the fp32 ``.grad``. Allocator rounding: the caching allocator
    rounds each block up to 512 bytes (on average 256 per tensor of parameters, gradients and state).
    """
    b, s = batch.micro_batch_size, batch.seq_len
    low_b = 4 if plan.precision == "fp32" else 2
    weights, opt, grads = device["parameters"], device["optimizer"], device["gradients"]
    comm = device.get("communication", 0.0)
    stored = sum(acts.values())
    stored_other = stored - acts.get("llm", 0.0)
    has_llm = cfg.has("text")
    frozen_llm = plan.llm_adapter != "none" and has_llm
    # FSDP2 gathers 16-bit parameters itself (MixedPrecisionPolicy): nothing for autocast to cast
    mixed = plan.precision in ("bf16-mixed", "fp16-mixed") and plan.sharding != "fsdp2"
    cast = dict(cast_parameters(cfg))
    if frozen_llm:  # a frozen base is already 16-bit / NF4: only the adapters are cast
        cast["llm_blocks"] = _lora_parameters(cfg, plan.lora_rank)
    ckpt = plan.activation_checkpointing
    cache_all = 2.0 * sum(cast.values()) if mixed else 0.0
    cache_saved = 2.0 * (cast["other"] + (0 if ckpt else cast["llm_blocks"] + cast["datacube_checkpointed"])) \
        if mixed else 0.0
    cache_other = 2.0 * (cast["other"] + (0 if ckpt else cast["datacube_checkpointed"])) if mixed else 0.0

    layer_transient = loss_grad = first_block = block_cast = 0.0
    if has_llm:  # the LLM's backward comes first, one block at a time (docstring)
        c = cfg.llm
        kernel = attention_kernel(cfg, plan, cuda)
        low, f32, n_layers, _ = _llm_activation_elements(cfg, b, s, plan, kernel)
        llm_layer = low * low_b + f32 * 4
        block_cast = 2.0 * cast["llm_blocks"] / max(n_layers, 1) if mixed else 0.0
        h, inter, a = c.hidden, c.intermediate, c.n_heads
        mlp = b * s * (3 * inter * low_b + 2 * h * 4)
        attn = 2 * a * s * s * b * low_b if kernel in ("math", "eager") else 0.0
        wgrad = 2.0 * max(h * inter, h * c.n_heads * c.head_dim) if mixed and not frozen_llm else 0.0
        layer_transient = (max(mlp, attn) + wgrad) if n_layers else 0.0
        loss_grad = b * (s - 1) * c.vocab_size * 4
        first_block = llm_layer + (b * s * h * 4 if ckpt else 0.0)  # + its recomputation input
    opt_temp = 0.0
    if not cuda and plan.optimizer == "adamw" and plan.cpu_offload == "none":
        opt_temp = 2 * 4 * max(_largest_parameter(cfg), 0)
    grads_in_accumulation = grads if batch.grad_accum_steps > 1 else 0.0
    rounding = 256.0 * n_tensors * (2 + (2 if opt else 0))
    inputs = input_bytes(cfg, batch)
    common = {"parameters": weights, "optimizer": opt, "communication": comm, "inputs": inputs,
              "allocator_rounding": rounding}
    return {
        "forward end": {**common, "gradients": grads_in_accumulation, "activations": stored,
                        "autocast_weight_cache": cache_all},
        "backward start": {**common, "gradients": grads_in_accumulation, "activations": stored,
                           "autocast_weight_cache": cache_saved,
                           "backward_transients": max(loss_grad, layer_transient)},
        # without an LLM: every gradient exists while the encoders' activations are still stored
        ("end of LLM backward" if has_llm else "end of backward"): {
            **common, "gradients": grads, "activations": stored_other + first_block,
            "autocast_weight_cache": cache_other + block_cast, "backward_transients": layer_transient},
        "optimizer step": {**common, "gradients": grads, "optimizer_step_temporaries": opt_temp},
    }


@dataclass
class TimeEstimate:
    compute_s: float
    pcie_s: float
    host_optimizer_s: float
    step_s: float
    steps_per_s: float
    tokens_per_s: float
    upper_bound_steps_per_s: float  # at 100% MFU, no offload

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def time_per_step(est: Estimate, hardware: Hardware, mfu: float = 0.35) -> TimeEstimate:
    """Returns the time of one optimizer step: compute at ``mfu`` of the devices' peak, PCIe
    traffic when offloading, and the host-side optimizer step; the slowest bounds the step.

    Raises:
        ValueError: CPU hardware (no peak throughput table), or mfu outside (0, 1].
    """
    if hardware.device is None:
        raise ValueError("time_per_step needs a GPU from DEVICES; the CPU has no entry in the peak table")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu}: must be in (0, 1]")
    peak = hardware.n_devices * hardware.device.peak_flops_bf16
    compute = est.flops_per_step / (peak * mfu)
    bound = peak / est.flops_per_step
    plan = est.plan
    micro_batches = est.batch.grad_accum_steps
    pcie = 0.0
    host_opt = 0.0
    n = est.trainable_parameters
    if plan.cpu_offload == "params_optimizer":
        compute_bytes = 2 if plan.precision != "fp32" else 4
        per_rank = est.parameters["total"] / plan.world_size
        # each micro-batch all-gathers the parameters twice (forward, backward) and sends grads back
        pcie = micro_batches * (2 * per_rank * compute_bytes + per_rank * 4) / PCIE_BYTES_PER_S
    if plan.cpu_offload in ("optimizer", "params_optimizer"):
        # read/write weights, grads and moments once: ~ (3 x 4 + 2 x state) bytes per parameter
        state = optimizer_state_bytes_per_param(plan.optimizer)
        host_opt = n * (12 + 2 * state) / HOST_MEMORY_BANDWIDTH
        if plan.cpu_offload == "optimizer":
            pcie += n * 4 * 2 / plan.world_size / PCIE_BYTES_PER_S  # grads down, weights up
    step = max(compute, pcie, host_opt)  # at best the three overlap; the slowest bounds the step
    return TimeEstimate(compute, pcie, host_opt, step, 1 / step, est.tokens_per_step / step, bound)


def check_fit(est: Estimate, hardware: Hardware) -> list[str]:
    """Returns the reasons ``est`` does not fit ``hardware`` (empty when it fits)."""
    reasons = []
    if hardware.device is not None:
        cap = DEVICE_LIMIT * hardware.device.memory_bytes
        if est.device_total > cap:
            term, value, shrink = est.dominant()
            reasons.append(f"{est.device_total / GB:.1f} GB per device (peak reserved + CUDA context, at "
                           f"{est.peak_phase}) > {100 * DEVICE_LIMIT:.0f}% of {hardware.device.memory_bytes / GB:.0f} GB; "
                           f"largest term {term} {value / GB:.1f} GB ({shrink})")
    host_cap = HOST_LIMIT * hardware.host_ram_bytes
    host = est.host_total + (est.device_total if hardware.device is None else 0.0)  # CPU: one memory
    if host > host_cap:
        reasons.append(f"host {host / GB:.1f} GB > {100 * HOST_LIMIT:.0f}% of {hardware.host_ram_bytes / GB:.0f} GB RAM")
    return reasons


class MemoryBudgetError(RuntimeError):
    """A plan does not fit its hardware; the message gives the estimate and plans that fit."""
