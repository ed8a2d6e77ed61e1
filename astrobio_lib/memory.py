"""Memory budget: estimate, measure, and search training plans; FLOPs and time per step.

One estimator serves the memory-budget notebook, the training preflight and the tests.

**States** (bytes per parameter, per tensor): weights 4 in fp32 and in torch-autocast mixed
precision (the fp32 weights *are* the master copy; 16-bit copies are transient), 2 in pure bf16;
gradients like the weights; AdamW 8, bitsandbytes 8-bit AdamW 2 + 2*4/256 (uint8 moments and an
fp32 absmax per 256-element block) for tensors of >= 4096 elements and 8 below (bitsandbytes keeps
those in 32-bit). With fp32 AdamW that totals 16 bytes/parameter, the ZeRO paper's figure.
LoRA freezes the LLM base in bf16 (2 bytes) and QLoRA in NF4 (0.5 + 4/64 bytes: 4-bit codes and
an fp32 absmax per 64-element block), training rank-r adapters on its seven projections.

**Activations** are counted as PyTorch's autograd stores them for these models — derived op by
op from the code and checked against :func:`measure` (saved-tensor hooks) in
``benchmarks/memory_estimator.py``:
- LLM layer, fp32, per token: 8h + 2h_kv + 4I + a + 2 elements (each RMSNorm keeps its input,
  its normalised output and rstd: 2h + 1; the weighted norm outputs feeding q/k/v and gate/up;
  SDPA's q, k, v, out and log-sum-exp; SwiGLU's gate, SiLU, up and product). The eager backend adds the a*s attention probabilities (and softmax output) per
  token. With checkpointing only the block input (h) is stored per layer, plus one block
  recomputed at a time during backward (reported as ``recompute_peak``). The next-token loss
  (computed by the fusion model, so counted with the losses) stores the fp32 log-softmax,
  (s - 1) * V per sample, and its int64 targets.
- For comparison, Korthikanti et al. 2022 (GPT, GELU MLP of 4h, dropout):
  s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit (:func:`korthikanti_layer_bytes`).
- Datacube: each stage stores its two zero/circular-padded conv inputs, the GroupNorm inputs
  (+ 2 statistics per group) and both GELU inputs; the ViT layer (pre-norm, GELU) stores
  T*(16d + 4 + heads) per sample (+ heads*T with a padding mask).
- GATv2Conv: 4*N*F_in + 12*E'*H*C + 12*E'*H + 16*E' bytes (E' = edges with one self loop per
  node), fitted exactly to measurement; plus the VGAE's reparameterisation, decoders and pooling.

Mixed precision stores 2-byte copies for matmul/conv/attention inputs and keeps norm inputs,
statistics and the log-sum-exp in fp32 (autocast). Autocast casts a non-leaf input once per op
that consumes it, so q, k and v (and gate and up) each save their own 16-bit copy of the norm
output (3h more per token than fp32, where they share one); checked on CPU autocast, which casts
the same ops. The attention kernel decides what attention stores (:func:`attention_kernel`): on
CUDA, fp32 with grouped-query heads falls back to SDPA's math path, which stores the a*s softmax
output per token (measured: +1.2 GB on the small preset at seq 512).

**Peak of a step** (what ``torch.cuda.max_memory_allocated`` reports): not the sum of everything
above — gradients, activations and casts never all coexist. :func:`step_phases` counts the live
bytes, by named term, at the four moments where the peak can fall (end of forward, start of
backward, end of the LLM's backward, optimizer step); the estimate's peak is the largest. Terms:
``parameters``, ``optimizer`` (persistent states), ``gradients`` (absent until backward unless a
micro-batch accumulates onto them), ``activations`` (stored for backward), ``autocast_weight_cache``
(the 16-bit copies autocast makes of every weight a matmul/conv uses: cached until autocast exits,
saved by autograd until each op's backward; :func:`cast_parameters`), ``backward_transients``
(the gradients one layer's backward holds at once, or the loss's logits gradient),
``optimizer_step_temporaries``, ``communication`` (DDP buckets, FSDP2 gathered units), ``inputs``
(the micro-batch) and ``allocator_rounding`` (blocks rounded up to 512 bytes). Validated against
the H100 allocator peaks in ``tests/data/measurements`` (4 configurations, +1.7% to +6.2%;
``tests/test_memory_cuda.py``), never more than 5% under.

**Allowances** (stated, not fitted): allocator fragmentation 10% of the peak (reserved minus
allocated measured 2-18% on the H100), CUDA context 0.6 GB per device, 3 GB of host RAM per
process (Python, CUDA libraries), and the dataset held in host RAM. The fit check compares peak
allocated + fragmentation + context (:attr:`Estimate.device_total`) with 90% of the device.

**Measured probe** (:func:`probe`): the same question answered by the device itself — real steps
of depth-reduced copies of the model, extrapolated linearly in depth.

**Time**: FLOPs per optimizer step = 6 x parameters x tokens for the LLM (+ 12*L*h*s per token
for attention scores), 8 x with activation recomputation, plus the conv, ViT and GNN FLOPs;
divided by devices x peak x MFU. Offloading adds PCIe traffic (bound at 16 GB/s effective per
device) and a host-side optimizer step (bound by host memory bandwidth, 20 GB/s assumed).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Optional

GB = 1e9  # memory is quoted in decimal GB, as vendors do
GIB = 1024**3
CUDA_CONTEXT_BYTES = 0.6e9
FRAGMENTATION = 0.10
HOST_PROCESS_BYTES = 3e9
PCIE_BYTES_PER_S = 16e9
HOST_MEMORY_BANDWIDTH = 20e9
DEVICE_LIMIT = 0.90
HOST_LIMIT = 0.85


@dataclass(frozen=True)
class Device:
    """A training device: memory (bytes), dense bf16/fp16 tensor peak (FLOP/s), bandwidth (B/s)."""

    name: str
    memory_bytes: float
    peak_flops_bf16: float
    memory_bandwidth: float
    bf16: bool
    source: str


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("RTX A5000", 24 * GB, 111e12, 768e9, True,
               "NVIDIA RTX A5000 data sheet: 256 tensor cores x 128 FMA x 2 x 1.695 GHz"),
        Device("RTX 4090", 24 * GB, 165e12, 1008e9, True, "NVIDIA Ada whitepaper (fp32 accumulate)"),
        Device("A100 80GB SXM", 80 * GB, 312e12, 2.0e12, True, "NVIDIA A100 data sheet"),
        Device("H100 SXM", 80 * GB, 989e12, 3.35e12, True, "NVIDIA H100 data sheet (dense)"),
    )
}

# The seeds' stated component sizes (parameters), for comparison with our presets, whose counts
# come from building them on the meta device (astrobio_lib.models.presets).
SEEDS_STATED_PARAMETERS = {"llm": 13.14e9, "graph_vae": 1.2e9, "datacube_cnn": 2.5e9}

_WEIGHT_BYTES = {"fp32": 4, "bf16-mixed": 4, "fp16-mixed": 4, "bf16": 2}
PRECISIONS = tuple(_WEIGHT_BYTES)
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit")
SHARDINGS = ("none", "ddp", "fsdp2")
OFFLOADS = ("none", "optimizer", "params_optimizer")
ADAPTERS = ("none", "lora", "qlora")
_DEVICE_TOKENS = {"A5000": "RTX A5000", "4090": "RTX 4090", "A100": "A100 80GB SXM", "H100": "H100 SXM"}


def device_for_name(name: str) -> Optional["Device"]:
    """Returns the :data:`DEVICES` entry of a CUDA device name as torch reports it (e.g. "NVIDIA
    H100 80GB HBM3" → H100 SXM), or None for a GPU whose peak astrobio does not know."""
    upper = name.upper()
    return next((DEVICES[key] for token, key in _DEVICE_TOKENS.items() if token in upper), None)


def mfu(samples_per_s: float, flops_per_sample: float, peak_flops: Optional[float]) -> Optional[float]:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' dense bf16 peak (None when
    the peak is unknown, e.g. on a CPU)."""
    return samples_per_s * flops_per_sample / peak_flops if peak_flops else None


def not_runnable(plan: "Plan", has_llm_checkpoint: bool = False) -> Optional[str]:
    """Returns why the trainer cannot run ``plan`` with this configuration, or None when it can:
    LoRA / QLoRA adapt a pretrained LLM (``llm_checkpoint``) and are not combined with FSDP2."""
    if plan.llm_adapter != "none" and not has_llm_checkpoint:
        return f"not runnable here: {plan.llm_adapter} needs llm_checkpoint (a pretrained LLM to adapt)"
    if plan.llm_adapter != "none" and plan.sharding == "fsdp2":
        return f"not runnable: {plan.llm_adapter} with FSDP2 is not supported (use ddp)"
    return None


def optimizer_state_bytes_per_param(optimizer: str, numel: int = 1 << 20) -> float:
    """Returns optimizer-state bytes per parameter for a tensor of ``numel`` elements.

    AdamW (fp32 moments): 8. bitsandbytes 8-bit AdamW: 2 uint8 moments + one fp32 absmax per
    256-element block for each moment = 2 + 2*4/256 = 2.03125; tensors under 4096 elements keep
    32-bit state (8 bytes).

    Raises:
        ValueError: unknown optimizer.
    """
    if optimizer == "adamw":
        return 8.0
    if optimizer in ("adamw8bit", "paged_adamw8bit"):
        return 8.0 if numel < 4096 else 2.0 + 2 * 4 / 256
    raise ValueError(f"optimizer={optimizer!r}: one of {', '.join(OPTIMIZERS)}")


def _quantile_map_bytes(optimizer: str, numel: int) -> int:
    """bitsandbytes keeps two 256-entry fp32 quantile maps per 8-bit state tensor (2 KiB)."""
    return 2 * 256 * 4 if optimizer in ("adamw8bit", "paged_adamw8bit") and numel >= 4096 else 0


def state_bytes_per_param(precision: str, optimizer: str) -> dict[str, float]:
    """Returns the bytes per parameter of weights, gradients, fp32 master copy and optimizer
    state for a precision / optimizer pair (no sharding, no offload, a large tensor).

    ``bf16-mixed`` / ``fp16-mixed`` are torch autocast: the weights *are* the fp32 master copy
    and gradients are fp32 (4 + 4), 16-bit copies exist only transiently for the matmuls; with
    fp32 AdamW that is 16 bytes/parameter, the same total as the ZeRO paper's 2 + 2 + 4 + 8
    (16-bit weights and grads + fp32 master + moments). Pure ``bf16`` keeps 2 + 2 and no master.

    Raises:
        ValueError: unknown precision or optimizer.
    """
    if precision not in _WEIGHT_BYTES:
        raise ValueError(f"precision={precision!r}: one of {', '.join(_WEIGHT_BYTES)}")
    weights = _WEIGHT_BYTES[precision]
    return {"weights": float(weights), "gradients": float(weights), "master_fp32": 0.0,
            "optimizer": optimizer_state_bytes_per_param(optimizer)}


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, fused_attention: bool = True) -> float:
    """Returns Korthikanti et al. 2022's activation bytes of one GPT layer in 16-bit without
    recomputation: s*b*h*(34 + 5*a*s/h); the 5as/h term (attention scores, softmax, dropout)
    disappears with fused attention (flash / SDPA)."""
    return s * b * h * (34 + (0 if fused_attention else 5 * a * s / h))


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """How a model is trained: precision, optimizer, recomputation, parallelism, offload, adapter."""

    precision: str = "bf16-mixed"
    optimizer: str = "adamw8bit"
    activation_checkpointing: bool = False
    sharding: str = "none"
    world_size: int = 1
    cpu_offload: str = "none"
    llm_adapter: str = "none"
    lora_rank: int = 16
    lora_dropout: float = 0.05
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        for name, value, allowed in (("precision", self.precision, PRECISIONS), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("sharding", self.sharding, SHARDINGS), ("cpu_offload", self.cpu_offload, OFFLOADS),
                                     ("llm_adapter", self.llm_adapter, ADAPTERS),
                                     ("attention", self.attention, ("sdpa", "flash_attn", "eager"))):
            if value not in allowed:
                raise ValueError(f"Plan: {name}={value!r}: one of {', '.join(allowed)}")
        if self.world_size < 1:
            raise ValueError(f"Plan: world_size={self.world_size}: must be >= 1")
        if self.cpu_offload == "params_optimizer" and self.sharding != "fsdp2":
            raise ValueError("Plan: cpu_offload=params_optimizer needs sharding=fsdp2 (FSDP2 CPUOffloadPolicy)")

    @property
    def name(self) -> str:
        parts = [self.precision, self.optimizer]
        if self.activation_checkpointing:
            parts.append("ckpt")
        if self.sharding != "none":
            parts.append(f"{self.sharding}x{self.world_size}")
        if self.cpu_offload != "none":
            parts.append(f"offload-{self.cpu_offload.replace('params_optimizer', 'params+opt')}")
        if self.llm_adapter != "none":
            parts.append(f"{self.llm_adapter}-r{self.lora_rank}")
        return " ".join(parts)


@dataclass(frozen=True)
class BatchShape:
    """A micro-batch: every sample is assumed to carry every modality (the worst case)."""

    micro_batch_size: int = 1
    seq_len: int = 512
    grad_accum_steps: int = 1
    graph_nodes: int = 72
    graph_edges: int = 455


@dataclass(frozen=True)
class Hardware:
    device: Optional[Device]  # None: CPU
    n_devices: int = 1
    host_ram_bytes: float = 64 * GB

    @property
    def name(self) -> str:
        return f"{self.n_devices} x {self.device.name}" if self.device else "CPU"


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


# --------------------------------------------------------------------------- parameters


_INVENTORY_CACHE: dict[str, list[tuple[str, str, int]]] = {}


def parameter_inventory(cfg) -> list[tuple[str, str, int]]:
    """Returns (component, parameter name, numel) for every parameter, built on the meta device
    (cached per configuration: a plan search estimates the same model many times)."""
    from astrobio_lib.models.fusion import build_model

    key = repr(cfg)
    if key in _INVENTORY_CACHE:
        return _INVENTORY_CACHE[key]
    model = build_model(cfg, device="meta")
    prefixes = {"text_encoder": "llm", "graph_encoder": "graph_vae", "climate_encoder": "datacube_cnn"}
    out = []
    for name, p in model.named_parameters():
        comp = next((c for pre, c in prefixes.items() if name.startswith(pre)), "fusion_and_heads")
        out.append((comp, name, p.numel()))
    _INVENTORY_CACHE[key] = out
    return out


def component_counts(cfg) -> dict[str, int]:
    """Returns parameters per component and ``total`` (meta device, cached)."""
    counts: dict[str, int] = {}
    for comp, _, n in parameter_inventory(cfg):
        counts[comp] = counts.get(comp, 0) + n
    counts["total"] = sum(counts.values())
    return counts


_CAST_CACHE: dict[str, dict[str, int]] = {}


def cast_parameters(cfg) -> dict[str, int]:
    """Returns the parameters that torch autocast casts to 16 bit, by where they live:
    ``llm_blocks`` and ``datacube_checkpointed`` (inside the regions activation checkpointing
    recomputes) and ``other``.

    Autocast casts the fp32 weight (and bias) of every matmul-type op — ``nn.Linear`` (PyG's too),
    convolutions, ``nn.MultiheadAttention``'s input projection — and caches each cast of a leaf
    that requires grad until the outermost autocast region exits (``cached_cast`` in
    ``aten/src/ATen/autocast_mode.cpp``); the 16-bit copies are also saved by those ops for
    backward, so without checkpointing they live until each op's backward has run. Embedding
    tables, norm scales and attention vectors are not cast."""
    from torch import nn

    from astrobio_lib.models.fusion import build_model

    key = repr(cfg)
    if key in _CAST_CACHE:
        return _CAST_CACHE[key]
    model = build_model(cfg, device="meta")
    seen: set[int] = set()
    out = {"llm_blocks": 0, "datacube_checkpointed": 0, "other": 0}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.MultiheadAttention):
            tensors = [mod.in_proj_weight, mod.in_proj_bias]
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or (
                type(mod).__name__ == "Linear" and isinstance(getattr(mod, "weight", None), nn.Parameter)):
            tensors = [mod.weight, getattr(mod, "bias", None)]
        else:
            continue
        where = ("llm_blocks" if name.startswith("text_encoder.blocks.") else "datacube_checkpointed"
                 if name.startswith(("climate_encoder.stages.", "climate_encoder.layers.")) else "other")
        for t in tensors:
            if isinstance(t, nn.Parameter) and id(t) not in seen:
                seen.add(id(t))
                out[where] += t.numel()
    _CAST_CACHE[key] = out
    return out


_LLM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate", "up", "down")


def _lora_parameters(cfg, rank: int) -> int:
    """Trainable LoRA parameters: r*(in + out) on each of the seven projections per layer."""
    c = cfg.llm
    hd = c.head_dim
    shapes = [(c.hidden, c.n_heads * hd), (c.hidden, c.n_kv_heads * hd), (c.hidden, c.n_kv_heads * hd),
              (c.n_heads * hd, c.hidden), (c.hidden, c.intermediate), (c.hidden, c.intermediate),
              (c.intermediate, c.hidden)]
    return c.n_layers * sum(rank * (i + o) for i, o in shapes)


# --------------------------------------------------------------------------- activations


def attention_kernel(cfg, plan: Plan, cuda: bool) -> str:
    """Returns which attention kernel runs the LLM, as it decides what is stored for backward:
    ``fused`` (flash / cuDNN / memory-efficient: q, k, v, out and the log-sum-exp), ``math``
    (SDPA's reference path: the scaled q, the GQA-expanded k and v, and the softmax output, a*s per
    token) or ``eager`` (our written-out attention).

    SDPA's dispatch (``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``): flash takes fp16/bf16
    with head_dim <= 256 and grouped-query heads; the memory-efficient kernel takes fp32 but (torch
    2.11) not grouped-query heads, so fp32 with n_kv_heads < n_heads falls back to math on CUDA —
    measured on an H100 (``../shared/measurements``: +1.2 GB on the small preset, fp32, seq 512).
    On CPU, SDPA's flash kernel takes fp32 too."""
    if plan.attention == "eager":
        return "eager"
    if plan.attention == "flash_attn" or not cuda:
        return "fused"
    c = cfg.llm
    low_precision = plan.precision != "fp32"
    if low_precision and c.head_dim <= 256:
        return "fused"
    return "fused" if c.n_kv_heads == c.n_heads else "math"


def _llm_activation_elements(cfg, b: int, s: int, plan: Plan, kernel: str = "fused"
                             ) -> tuple[float, float, float, float]:
    """Returns the LLM's per-micro-batch activation elements of one layer that may be stored in
    16 bit, those kept in fp32, the number of layers, and the elements of the fp32 log-softmax of
    the next-token loss (see the module docstring for each term); ``kernel`` from
    :func:`attention_kernel`."""
    c = cfg.llm
    h, hkv, inter, a, L = c.hidden, c.n_kv_heads * c.head_dim, c.intermediate, c.n_heads, c.n_layers
    # per token, per layer: low-precision-able part and fp32-kept part
    low = 2 * h + (2 * h + 2 * hkv) + 4 * inter  # weighted norm outputs, SDPA q/k/v/out, SwiGLU
    f32 = 2 * (2 * h + 1) + a  # two RMSNorms (input, normalised output, rstd), log-sum-exp
    if plan.precision in ("bf16-mixed", "fp16-mixed") and plan.llm_adapter == "none":
        # autocast casts a non-leaf input separately for every op that consumes it (only leaves are
        # cached): q, k and v each save their own 16-bit copy of the norm output, gate and up too
        low += 3 * h
    if kernel in ("eager", "math"):
        low += 2 * a * s if kernel == "eager" else a * s  # probabilities (+ eager's pre-softmax copy)
        if kernel == "math":  # scaled q and expanded k, v replace q, k, v; no log-sum-exp
            low += 3 * h - (h + 2 * hkv)
            f32 -= a
    if plan.llm_adapter != "none":
        # peft LoRA on a frozen base: the base linears save no inputs (no weight gradients), but each
        # adapter's lora_A saves its own (dropout) input: q, k, v, gate, up each a copy of a norm
        # output instead of the two norm outputs, o and down their inputs; with dropout > 0 also a
        # one-byte mask per element (counted as a quarter fp32 element); plus the rank-r outputs
        low += 2 * plan.lora_rank * len(_LLM_PROJECTIONS)
        if plan.lora_dropout > 0:
            low += 4 * h + inter
            f32 += (6 * h + inter) / 4
        else:
            low += inter
    return low * b * s, f32 * b * s, L, (s - 1) * c.vocab_size * b


def _gat_bytes(n: int, e: int, f_in: int, c: int, heads: int, dtype_bytes: int) -> float:
    e_prime = e + n
    return (dtype_bytes * n * f_in + 3 * dtype_bytes * e_prime * heads * c + 12 * e_prime * heads + 16 * e_prime)


def activation_bytes(cfg, plan: Plan, batch: BatchShape, cuda: bool = False) -> tuple[dict[str, float], float]:
    """Returns (stored activation bytes per component, recompute-peak bytes) for one micro-batch
    (``cuda`` selects the attention kernel CUDA would run, see :func:`attention_kernel`)."""
    low_b = 4 if plan.precision == "fp32" else 2
    b, s = batch.micro_batch_size, batch.seq_len
    out: dict[str, float] = {}

    # LLM
    low, f32, n_layers, loss_elems = _llm_activation_elements(cfg, b, s, plan, attention_kernel(cfg, plan, cuda))
    per_layer = low * low_b + f32 * 4
    h = cfg.llm.hidden
    if plan.activation_checkpointing:
        stored = n_layers * b * s * h * 4  # block inputs (the fp32 residual stream)
        recompute = per_layer
    else:
        stored, recompute = n_layers * per_layer, 0.0
    # embedding indices (int64), final RMSNorm, lm_head input
    stored += b * s * 8 + b * s * (2 * h + 1) * 4 + b * s * h * low_b
    out["llm"] = stored

    # datacube CNN + ViT
    dc = cfg.datacube
    cube = 0.0
    c_in, lvl, lat, lon = dc.variables, dc.levels, dc.lat, dc.lon
    rec_peak = 0.0
    stage_bytes = []
    for i in range(dc.depth):
        c_out = dc.base_channels * 2 ** min(i, dc.max_doublings)
        down = i > 0 and lat // 2 >= 8 and lon // 2 >= 8
        lat2, lon2 = ((lat + 1) // 2, (lon + 1) // 2) if down else (lat, lon)
        groups = min(8, c_out)
        vol_out = c_out * lvl * lat2 * lon2
        st = (low_b * c_in * (lvl + 2) * (lat + 2) * (lon + 2) + low_b * c_out * (lvl + 2) * (lat2 + 2) * (lon2 + 2)
              + 2 * (4 * vol_out + 8 * groups) + 2 * 4 * vol_out)
        stage_bytes.append(b * st)
        c_in, lat, lon = c_out, lat2, lon2
    pl, pa, po = dc.patch
    tokens = 1 + (lvl // pl) * (lat // pa) * (lon // po)
    d = dc.d_model
    # pre-norm ViT layer: attention input + q, k, v, out (5d), MLP input (d), GELU input and
    # linear2 input (4d each) in low precision; two LayerNorm inputs + mean/rstd and the
    # log-sum-exp in fp32
    vit_layer = b * tokens * (low_b * 14 * d + 4 * (2 * d + 4 + dc.n_heads))
    if plan.activation_checkpointing:
        # each stage/layer stores only its input; one is recomputed at a time
        stage_inputs = []
        c_in, lat, lon = dc.variables, dc.lat, dc.lon
        for i in range(dc.depth):
            stage_inputs.append(b * 4 * c_in * lvl * lat * lon)
            c_out = dc.base_channels * 2 ** min(i, dc.max_doublings)
            if i > 0 and lat // 2 >= 8 and lon // 2 >= 8:
                lat, lon = (lat + 1) // 2, (lon + 1) // 2
            c_in = c_out
        cube = sum(stage_inputs) + dc.n_layers * b * tokens * d * 4
        rec_peak = max(stage_bytes + [vit_layer])
    else:
        cube = sum(stage_bytes) + dc.n_layers * vit_layer
    cube += b * c_in * lvl * lat * lon * low_b + b * tokens * (d + 2) * 4  # patch-embed input, final norm
    out["datacube_cnn"] = cube

    # graph VAE (GATv2 layers, mu / logstd heads, reparameterisation, decoders, pooling)
    g = cfg.graph
    n, e = batch.graph_nodes * b, batch.graph_edges * b
    width = g.hidden * g.heads
    gnn = sum(_gat_bytes(n, e, g.node_features if i == 0 else width, g.hidden, g.heads, low_b) for i in range(g.n_layers))
    gnn += g.n_layers * n * width * 4  # ELU outputs
    gnn += 2 * _gat_bytes(n, e, width, g.latent, 1, low_b)  # mu and logstd heads (share no storage)
    gnn += 3 * n * g.latent * 4  # reparameterisation: noise, exp(logstd), z
    gnn += 2 * 2 * e * g.latent * 4 + 2 * e * 4  # inner-product decoder on positive + negative edges
    gnn += n * g.latent * low_b + 2 * n * width * 4  # node-feature decoder
    out["graph_vae"] = gnn

    # fusion transformer over 6 tokens with a padding mask, encoders for catalog / spectrum, heads
    from astrobio_lib.models.fusion import N_GASES, N_RETRIEVAL, SPECTRUM_POSITIONS

    f = cfg.fusion
    tok = 1 + 5
    fusion_layer = b * tok * (low_b * 14 * f.d_model + 4 * (2 * f.d_model + 4 + 2 * f.n_heads))
    spec = b * (f.spectrum_bins * 4 + 3 * f.spectrum_channels * f.spectrum_bins * 4
                + f.spectrum_channels * SPECTRUM_POSITIONS * 4)
    small = b * (2 * f.catalog_features * 4 + 2 * f.d_model * 4) + b * tok * f.d_model * 4 * 4
    lm_loss = loss_elems * 4 + b * (s - 1) * 8  # fp32 log-softmax + int64 targets
    heads = b * (f.d_model + 2 + N_GASES + 2 * N_RETRIEVAL) * 4
    out["fusion_and_heads"] = f.n_layers * fusion_layer + spec + small + heads + lm_loss
    return out, recompute + rec_peak


# --------------------------------------------------------------------------- FLOPs


def flops_per_sample(cfg, batch: BatchShape, plan: Plan) -> dict[str, float]:
    """Returns training FLOPs (forward + backward) per sample by component."""
    counts = component_counts(cfg)
    mult = 8 if plan.activation_checkpointing else 6
    c = cfg.llm
    s = batch.seq_len
    llm = mult * counts["llm"] * s + (mult // 2) * 2 * c.n_layers * c.hidden * s * s
    dc = cfg.datacube
    conv = 0.0
    c_in, lat, lon = dc.variables, dc.lat, dc.lon
    for i in range(dc.depth):
        c_out = dc.base_channels * 2 ** min(i, dc.max_doublings)
        if i > 0 and lat // 2 >= 8 and lon // 2 >= 8:
            lat, lon = (lat + 1) // 2, (lon + 1) // 2
        vol = dc.levels * lat * lon
        conv += 2 * 27 * (c_in * c_out + c_out * c_out) * vol
        c_in = c_out
    pl, pa, po = dc.patch
    tokens = 1 + (dc.levels // pl) * (lat // pa) * (lon // po)
    vit_params = dc.n_layers * 12 * dc.d_model**2
    cube = (mult / 2) * conv + mult * vit_params * tokens
    g = cfg.graph
    width = g.hidden * g.heads
    gnn = mult * counts["graph_vae"] * batch.graph_nodes + mult * g.n_layers * (batch.graph_edges + batch.graph_nodes) * width
    fusion = mult * counts["fusion_and_heads"] * 6
    return {"llm": llm, "datacube_cnn": cube, "graph_vae": gnn, "fusion_and_heads": fusion}


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
    frozen_llm = plan.llm_adapter != "none"
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
                    batch.seq_len * samples, phases, peak_phase, overheads)


def input_bytes(cfg, batch: BatchShape) -> float:
    """Bytes of one micro-batch on the device: token ids and mask (int64), the datacube (fp32),
    graph node features (fp32), edge index and batch vector (int64), spectrum and catalog rows."""
    dc, b = cfg.datacube, batch.micro_batch_size
    per_sample = (2 * batch.seq_len * 8 + dc.variables * dc.levels * dc.lat * dc.lon * 4
                  + batch.graph_nodes * (cfg.graph.node_features * 4 + 8) + batch.graph_edges * 16
                  + cfg.fusion.spectrum_bins * 4 + 2 * cfg.fusion.catalog_features * 4)
    return b * per_sample


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
    c = cfg.llm
    low_b = 4 if plan.precision == "fp32" else 2
    kernel = attention_kernel(cfg, plan, cuda)
    low, f32, n_layers, _ = _llm_activation_elements(cfg, b, s, plan, kernel)
    llm_layer = low * low_b + f32 * 4
    weights, opt, grads = device["parameters"], device["optimizer"], device["gradients"]
    comm = device.get("communication", 0.0)
    stored = sum(acts.values())
    stored_other = stored - acts.get("llm", 0.0)
    frozen_llm = plan.llm_adapter != "none"
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
        "end of LLM backward": {**common, "gradients": grads, "activations": stored_other + first_block,
                                "autocast_weight_cache": cache_other + block_cast,
                                "backward_transients": layer_transient},
        "optimizer step": {**common, "gradients": grads, "optimizer_step_temporaries": opt_temp},
    }


def _largest_parameter(cfg) -> int:
    return max((n for _, _, n in parameter_inventory(cfg)), default=0)


def _largest_block_params(cfg) -> int:
    """Parameters of the largest FSDP unit (one transformer block / CNN stage / GAT layer)."""
    c, dc, g = cfg.llm, cfg.datacube, cfg.graph
    llm_block = (c.hidden * c.n_heads * c.head_dim * 2 + 2 * c.hidden * c.n_kv_heads * c.head_dim
                 + 3 * c.hidden * c.intermediate)
    top = dc.base_channels * 2 ** min(dc.depth - 1, dc.max_doublings)
    cnn_stage = 27 * 2 * top * top
    vit = 12 * dc.d_model**2
    width = g.hidden * g.heads
    gat = 2 * width * width
    embed = c.vocab_size * c.hidden
    return max(llm_block, cnn_stage, vit, gat, embed)


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


def plans(cfg, hardware: Hardware, batch: BatchShape, mfu: float = 0.35,
          adapters: tuple[str, ...] = ADAPTERS, has_llm_checkpoint: bool = False) -> list[PlanVerdict]:
    """Returns a verdict for every plan on ``hardware``: fitting plans the trainer can run first,
    fastest first (smallest first on CPU, where no step time is estimated), then fitting plans that
    are not runnable with this configuration (adapters without ``llm_checkpoint``), then the rejected
    ones with the reason."""
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


# --------------------------------------------------------------------------- measurement


@dataclass
class Measurement:
    device: dict[str, float]
    activations_by_component: dict[str, float]

    @property
    def comparable(self) -> float:
        return sum(self.device[k] for k in ("parameters", "gradients", "optimizer", "master_fp32", "activations"))


def measure(model, batch: dict[str, Any], plan: Plan) -> Measurement:
    """Runs one real training step and returns the measured bytes by the estimator's categories.

    CPU: parameters, gradients and optimizer state are the exact bytes of their tensors (after
    one optimizer step); activations are the bytes of every storage autograd saves during the
    forward pass (``saved_tensors_hooks``; each storage counted once; parameters and buffers
    excluded), attributed to the top-level component that saved them. On CUDA it also reports
    ``max_memory_allocated`` and ``max_memory_reserved``.
    """
    import torch

    from astrobio_lib.optim import build_optimizer

    device = next(model.parameters()).device
    opt = build_optimizer(model, plan.optimizer, lr=1e-4)
    static = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    component = {"text_encoder": "llm", "graph_encoder": "graph_vae", "climate_encoder": "datacube_cnn"}
    stack: list[str] = []
    handles = []
    for name, mod in model.named_children():
        comp = component.get(name, "fusion_and_heads")
        handles.append(mod.register_forward_pre_hook(lambda m, i, c=comp: stack.append(c)))
        handles.append(mod.register_forward_hook(lambda m, i, o: (stack.pop(), None)[1]))
    seen: dict[int, tuple[int, str]] = {}

    def pack(t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in static and ptr not in seen:
            seen[ptr] = (st.nbytes(), stack[-1] if stack else "fusion_and_heads")
        return t

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if plan.precision in ("bf16-mixed",) \
        else torch.autocast(device.type, enabled=False)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            out = model(batch)
        out["loss"].backward()
        opt.step()
    finally:
        for h in handles:
            h.remove()
    acts: dict[str, float] = {}
    for nbytes, comp in seen.values():
        acts[comp] = acts.get(comp, 0) + nbytes
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    opt_bytes = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                opt_bytes += v.numel() * v.element_size()
    result = {"parameters": param_bytes, "gradients": grad_bytes, "optimizer": opt_bytes, "master_fp32": 0.0,
              "activations": sum(acts.values())}
    if device.type == "cuda":
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        result["max_memory_reserved"] = torch.cuda.max_memory_reserved(device)
    model.zero_grad(set_to_none=True)
    return Measurement(result, acts)


def hardware_from(gpu_name: str, n_devices: int, gpu_memory_gb: float, host_ram_gb: Optional[float]) -> Hardware:
    """Returns a :class:`Hardware` from params-file values; ``gpu_name`` "cpu" means no GPU.

    Raises:
        ValueError: a GPU name not in :data:`DEVICES`.
    """
    from astrobio_lib.environment import memory_bytes

    ram = host_ram_gb * GB if host_ram_gb else float(memory_bytes()[0] or 64 * GB)
    if gpu_name.lower() == "cpu":
        return Hardware(None, 1, ram)
    if gpu_name not in DEVICES:
        raise ValueError(f"gpu_name={gpu_name!r}: one of cpu, {', '.join(DEVICES)}")
    dev = DEVICES[gpu_name]
    if gpu_memory_gb and abs(gpu_memory_gb * GB - dev.memory_bytes) > 0.5 * GB:
        dev = dataclasses.replace(dev, memory_bytes=gpu_memory_gb * GB)
    return Hardware(dev, n_devices, ram)


def transformer_upper_bound_steps_per_s(n_params: float, tokens_per_step: int, devices: int, peak: float,
                                        recompute: bool = False) -> float:
    """Returns the physical ceiling on optimizer steps/s: devices x peak / (6 or 8 x N x tokens)."""
    return devices * peak / ((8 if recompute else 6) * n_params * tokens_per_step)


class MemoryBudgetError(RuntimeError):
    """A plan does not fit its hardware; the message gives the estimate and plans that fit."""


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


def breakdown_table(estimates: list[Estimate]) -> "pd.DataFrame":  # noqa: F821
    """Returns GB per device by term at each plan's peak, overheads included (rows: plans), for a
    stacked bar chart."""
    import pandas as pd

    return pd.DataFrame({e.plan.name: {k: v / GB for k, v in e.breakdown.items()} for e in estimates}).T.fillna(0.0)


# --------------------------------------------------------------------------- measured probe

PROBE_STACKS = {"llm": "llm", "datacube_vit": "datacube", "graph": "graph", "fusion": "fusion"}


def depth_reduced(cfg, depths: dict[str, int]):
    """Returns a copy of ``cfg`` with the named repeated stacks (:data:`PROBE_STACKS`: LLM decoder
    blocks, datacube ViT layers, GATv2 layers, fusion layers) at the given depths, widths unchanged."""
    out = dataclasses.replace(cfg)
    for stack, depth in depths.items():
        attr = PROBE_STACKS[stack]
        setattr(out, attr, dataclasses.replace(getattr(cfg, attr), n_layers=int(depth)))
    return out


@dataclass
class ProbeResult:
    """A measured memory probe: per-run measurements of depth-reduced copies and their linear
    extrapolation in depth to the full model (bytes)."""

    device: str
    full_depths: dict[str, int]
    runs: list[dict[str, Any]]  # {"depths": {...}, quantity: bytes, ...}
    extrapolated: dict[str, float]

    @property
    def peak_allocated(self) -> Optional[float]:
        """CUDA: the larger of the extrapolated forward+backward and optimizer-step peaks."""
        e = self.extrapolated
        return max(e["forward_backward_peak"], e["optimizer_step_peak"]) if "forward_backward_peak" in e else None

    @property
    def peak_reserved(self) -> Optional[float]:
        return self.extrapolated.get("peak_reserved")

    @property
    def comparable(self) -> float:
        """States + stored activations (what :func:`measure` observes on CPU), extrapolated."""
        return sum(self.extrapolated.get(k, 0.0) for k in ("parameters", "gradients", "optimizer", "activations"))

    def table(self) -> "pd.DataFrame":  # noqa: F821
        import pandas as pd

        rows = [{**{f"depth {k}": v for k, v in r["depths"].items()},
                 **{k: v / GB for k, v in r.items() if k != "depths"}} for r in self.runs]
        rows.append({**{f"depth {k}": v for k, v in self.full_depths.items()},
                     **{k: v / GB for k, v in self.extrapolated.items()}, "extrapolated": True})
        return pd.DataFrame(rows)


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _probe_cuda_run(model, batch, plan: Plan, steps: int, grad_accum_steps: int, base_alloc: int,
                    base_reserved: int) -> dict[str, float]:
    import torch

    from astrobio_lib.optim import build_optimizer
    from astrobio_lib.train.loop import autocast_for

    device = next(model.parameters()).device
    opt = build_optimizer(model, plan.optimizer, lr=1e-4)
    fb = st = reserved = 0
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(grad_accum_steps):
            with autocast_for(plan.precision, device):
                out = model(batch)
            out["loss"].backward()
        torch.cuda.synchronize(device)
        fb = torch.cuda.max_memory_allocated(device) - base_alloc
        reserved = max(reserved, torch.cuda.max_memory_reserved(device) - base_reserved)
        torch.cuda.reset_peak_memory_stats(device)
        opt.step()
        torch.cuda.synchronize(device)
        st = torch.cuda.max_memory_allocated(device) - base_alloc
        reserved = max(reserved, torch.cuda.max_memory_reserved(device) - base_reserved)
    persistent = torch.cuda.memory_allocated(device) - base_alloc  # weights, gradients, state
    del opt
    return {"forward_backward_peak": float(fb), "optimizer_step_peak": float(st), "peak_reserved": float(reserved),
            "persistent_after_step": float(persistent)}


def probe(cfg, plan: Plan, batch: dict[str, Any], device: Any = None, steps: int = 2, grad_accum_steps: int = 1,
          seed: int = 0) -> ProbeResult:
    """Measures the memory of training ``cfg`` with ``plan`` on this machine without building the
    full model: runs ``steps`` real training steps (forward, backward, optimizer step) of
    depth-reduced copies — every repeated stack at depth 1, then each stack in turn at depth 2,
    widths unchanged — and extrapolates every measured quantity linearly in each stack's depth:
    ``q(full) = q(1) + sum_s (L_s - 1) * (q(s at 2) - q(1))`` (exact when the layers of a stack are
    alike, as ours are: the first GATv2 layer differs, which the depth-1 run absorbs).

    On CUDA it measures, after ``torch.cuda.empty_cache``, the forward+backward peak and the
    optimizer-step peak of ``max_memory_allocated`` and the peak of ``max_memory_reserved`` (each
    relative to before the model was built); the predicted peak is the larger extrapolated phase.
    On CPU there is no allocator peak: it measures what :func:`measure` sees (parameter, gradient
    and optimizer-state bytes, saved activations), so the extrapolation is tested in CI.
    ``batch`` is one real micro-batch (moved to ``device``).

    Raises:
        ValueError: a LoRA/QLoRA or FSDP2 plan (the probe builds the plain model on one device;
            those plans use the analytical estimate), or ``steps`` < 1.
    """
    import gc

    import torch

    from astrobio_lib.models.fusion import build_model

    if plan.llm_adapter != "none" or plan.sharding == "fsdp2" or plan.cpu_offload != "none":
        raise ValueError(f"memory.probe: plan '{plan.name}' is not probed (it builds the plain model on one "
                         "device, without adapters, FSDP2 or offload); use memory.estimate for it")
    if steps < 1:
        raise ValueError(f"memory.probe: steps={steps}: must be >= 1")
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    full = {k: getattr(cfg, attr).n_layers for k, attr in PROBE_STACKS.items()}
    base = {k: 1 for k in full}
    configs = [dict(base)] + [{**base, k: 2} for k, n in full.items() if n > 1]
    batch = _to_device(batch, device)
    runs = []
    for depths in configs:
        small = depth_reduced(cfg, depths)
        if device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.synchronize(device)
            base_alloc, base_reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
            model = build_model(small, seed=seed).to(device)
            model.train()
            if plan.precision == "bf16":
                model = model.to(torch.bfloat16)
            q = _probe_cuda_run(model, batch, plan, steps, grad_accum_steps, base_alloc, base_reserved)
        else:
            model = build_model(small, seed=seed)
            model.train()
            m = measure(model, batch, plan)
            q = {k: float(m.device[k]) for k in ("parameters", "gradients", "optimizer", "activations")}
        del model
        runs.append({"depths": depths, **q})
    first = runs[0]
    extrapolated = {}
    for key in (k for k in first if k != "depths"):
        value = first[key]
        for run in runs[1:]:
            stack = next(k for k, d in run["depths"].items() if d == 2)
            value += (full[stack] - 1) * (run[key] - first[key])
        extrapolated[key] = value
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return ProbeResult(name, full, runs, extrapolated)


def measure_step_peak(cfg, plan: Plan, batch: dict[str, Any], steps: int = 2, grad_accum_steps: int = 1,
                      seed: int = 0, device: Any = "cuda") -> dict[str, float]:
    """Builds the full model on a CUDA device and returns the measured peaks of ``steps`` training
    steps (forward+backward and optimizer-step ``max_memory_allocated``, ``max_memory_reserved``),
    relative to before the model was built — the numbers the estimate and the probe predict.

    Raises:
        RuntimeError: no CUDA device.
    """
    import gc

    import torch

    from astrobio_lib.models.fusion import build_model

    if not torch.cuda.is_available():
        raise RuntimeError("measure_step_peak needs a CUDA device (on CPU use memory.measure)")
    device = torch.device(device)
    gc.collect()
    torch.cuda.empty_cache()
    base_alloc, base_reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    model = build_model(cfg, seed=seed).to(device)
    if plan.precision == "bf16":
        model = model.to(torch.bfloat16)
    try:
        q = _probe_cuda_run(model, _to_device(batch, device), plan, steps, grad_accum_steps, base_alloc, base_reserved)
    finally:
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return {**q, "peak_allocated": max(q["forward_backward_peak"], q["optimizer_step_peak"])}


def this_machine(hardware: Hardware) -> tuple[bool, str]:
    """Returns whether this machine is the configured hardware (the probe measures only the device
    it runs on) and a sentence saying which device is present."""
    import torch

    present = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    known = device_for_name(present) if present else None
    if hardware.device is None:
        return True, "configured for CPU" + (f" (a {present} is present too; the CPU is probed)" if present else "")
    if present is None:
        return False, (f"configured for {hardware.device.name} but this machine has no CUDA GPU: the probe runs "
                       f"on the pod (run this notebook there)")
    if known is None or known.name != hardware.device.name:
        return False, (f"configured for {hardware.device.name} but this machine has a {present}: the probe "
                       f"measures the device it runs on, so it is skipped here")
    return True, f"configured for {hardware.device.name} and this machine has one ({present})"


def compare_on_this_machine(cfg, plan: Plan, batch: dict[str, Any], shape: BatchShape, hardware: Hardware,
                            full_step: bool = True, steps: int = 2) -> "pd.DataFrame":  # noqa: F821
    """Returns the analytical estimate, the probe and (``full_step``) a measurement of the full model
    side by side for the device this runs on: on CUDA peak allocated / reserved of a training
    step; on CPU states + saved activations (the CPU has no allocator peak). Errors are relative to
    the full measurement when there is one."""
    import pandas as pd
    import torch

    cuda = torch.cuda.is_available() and hardware.device is not None
    est = estimate(cfg, plan, shape, hardware)
    pr = probe(cfg, plan, batch, device="cuda" if cuda else "cpu", steps=steps, grad_accum_steps=shape.grad_accum_steps)
    if cuda:
        rows = [{"source": "analytical estimate", "peak_allocated_GB": est.peak_allocated / GB,
                 "peak_reserved_GB": est.peak_reserved / GB, "peak_phase": est.peak_phase},
                {"source": f"probe (depth 1-2, extrapolated) on {pr.device}", "peak_allocated_GB": pr.peak_allocated / GB,
                 "peak_reserved_GB": pr.peak_reserved / GB}]
        if full_step:
            m = measure_step_peak(cfg, plan, batch, steps=steps, grad_accum_steps=shape.grad_accum_steps)
            rows.append({"source": "measured (full model)", "peak_allocated_GB": m["peak_allocated"] / GB,
                         "peak_reserved_GB": m["peak_reserved"] / GB})
        key = "peak_allocated_GB"
    else:
        from astrobio_lib.models.fusion import build_model

        rows = [{"source": "analytical estimate", "states_and_saved_activations_GB": est.measured_comparable / GB},
                {"source": "probe (depth 1-2, extrapolated) on cpu", "states_and_saved_activations_GB": pr.comparable / GB}]
        if full_step:
            model = build_model(cfg, seed=0)
            model.train()
            rows.append({"source": "measured (full model)",
                         "states_and_saved_activations_GB": measure(model, batch, plan).comparable / GB})
            del model
        key = "states_and_saved_activations_GB"
    table = pd.DataFrame(rows)
    if full_step:
        ref = table[key].iloc[-1]
        table["error_%"] = 100 * (table[key] / ref - 1)
    return table


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
