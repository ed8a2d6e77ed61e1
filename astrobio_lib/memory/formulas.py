"""Byte and FLOP formulas: states per parameter, activations per component as autograd stores them,
parameter inventories (meta device), FLOPs per sample, input bytes — for the components a model
builds (:attr:`astrobio_lib.models.fusion.MultimodalConfig.modalities`).

**States** (bytes per parameter, per tensor): weights 4 in fp32 and in torch-autocast mixed
precision (the fp32 weights *are* the master copy; 16-bit copies are transient), 2 in pure bf16;
gradients like the weights; AdamW 8, bitsandbytes 8-bit AdamW 2 + 2*4/256 (uint8 moments and an
fp32 absmax per 256-element block) for tensors of >= 4096 elements and 8 below (bitsandbytes keeps
those in 32-bit). With fp32 AdamW that totals 16 bytes/parameter, the ZeRO paper's figure.
LoRA freezes the LLM base in bf16 (2 bytes) and QLoRA in NF4 (0.5 + 4/64 bytes: 4-bit codes and
an fp32 absmax per 64-element block), training rank-r adapters on its seven projections.

**Activations** are counted as PyTorch's autograd stores them for these models — derived op by
op from the code and checked against :func:`astrobio_lib.memory.probe.measure` (saved-tensor hooks)
in ``benchmarks/memory_estimator.py``:
- LLM layer, fp32, per token: 8h + 2h_kv + 4I + a + 2 elements (each RMSNorm keeps its input,
  its normalised output and rstd: 2h + 1; the weighted norm outputs feeding q/k/v and gate/up;
  SDPA's q, k, v, out and log-sum-exp; SwiGLU's gate, SiLU, up and product). The eager backend adds
  the a*s attention probabilities (and softmax output) per token. With checkpointing only the block
  input (h) is stored per layer, plus one block recomputed at a time during backward (reported as
  ``recompute_peak``). The next-token loss stores the fp32 log-softmax, (s - 1) * V per sample, and
  its int64 targets.
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

**Time**: FLOPs per optimizer step = 6 x parameters x tokens for the LLM (+ 12*L*h*s per token
for attention scores), 8 x with activation recomputation, plus the conv, ViT and GNN FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Stated allowances (not fitted): allocator fragmentation 10% of the peak (reserved minus allocated
# measured 2-18% on an H100), CUDA context per device, host RAM per process (Python, CUDA libraries);
# offload traffic bounds; the fractions of a device / of host RAM a plan may use.
CUDA_CONTEXT_BYTES = 0.6e9
FRAGMENTATION = 0.10
HOST_PROCESS_BYTES = 3e9
PCIE_BYTES_PER_S = 16e9
HOST_MEMORY_BANDWIDTH = 20e9
DEVICE_LIMIT = 0.90
HOST_LIMIT = 0.85

SEEDS_STATED_PARAMETERS = {"llm": 13.14e9, "graph_vae": 1.2e9, "datacube_cnn": 2.5e9}

_WEIGHT_BYTES = {"fp32": 4, "bf16-mixed": 4, "fp16-mixed": 4, "bf16": 2}
PRECISIONS = tuple(_WEIGHT_BYTES)
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit")
SHARDINGS = ("none", "ddp", "fsdp2")
OFFLOADS = ("none", "optimizer", "params_optimizer")
ADAPTERS = ("none", "lora", "qlora")


def mfu(samples_per_s: float, flops_per_sample: float, peak_flops: Optional[float]) -> Optional[float]:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' dense bf16 peak (None when
    the peak is unknown, e.g. on a CPU)."""
    return samples_per_s * flops_per_sample / peak_flops if peak_flops else None


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
    """A micro-batch: every sample is assumed to carry every modality the model builds (the worst
    case); ``seq_len`` is the text length (0 for a model without text)."""

    micro_batch_size: int = 1
    seq_len: int = 512
    grad_accum_steps: int = 1
    graph_nodes: int = 72
    graph_edges: int = 455


# --------------------------------------------------------------------------- parameters


_INVENTORY_CACHE: dict[str, list[tuple[str, str, int]]] = {}


def parameter_inventory(cfg) -> list[tuple[str, str, int]]:
    """Returns (component, parameter name, numel) for every parameter, built on the meta device
    (cached per configuration: a plan search estimates the same model many times)."""
    from astrobio_lib.models.fusion import ENCODER_COMPONENTS, build_model

    key = repr(cfg)
    if key in _INVENTORY_CACHE:
        return _INVENTORY_CACHE[key]
    model = build_model(cfg, device="meta")
    out = []
    for name, p in model.named_parameters():
        comp = next((c for pre, c in ENCODER_COMPONENTS.items() if name.startswith(pre)), "fusion_and_heads")
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

    recompute = rec_peak = 0.0
    loss_elems = 0.0
    if cfg.has("text"):  # LLM
        low, f32, n_layers, loss_elems = _llm_activation_elements(cfg, b, s, plan, attention_kernel(cfg, plan, cuda))
        per_layer = low * low_b + f32 * 4
        h = cfg.llm.hidden
        if plan.activation_checkpointing:
            stored = n_layers * b * s * h * 4  # block inputs (the fp32 residual stream)
            recompute = per_layer
        else:
            stored = n_layers * per_layer
        # embedding indices (int64), final RMSNorm, lm_head input
        stored += b * s * 8 + b * s * (2 * h + 1) * 4 + b * s * h * low_b
        out["llm"] = stored

    if cfg.has("climate"):  # datacube CNN + ViT
        dc = cfg.datacube
        cube = 0.0
        c_in, lvl, lat, lon = dc.variables, dc.levels, dc.lat, dc.lon
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

    if cfg.has("graph"):  # graph VAE (GATv2 layers, mu / logstd heads, reparameterisation, decoders, pooling)
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

    # fusion transformer over the class token + one token per modality (padding mask), catalog and
    # spectrum encoders, the heads and the next-token loss
    from astrobio_lib.models.fusion import SPECTRUM_POSITIONS

    f = cfg.fusion
    tok = 1 + len(cfg.modalities)
    fusion_layer = b * tok * (low_b * 14 * f.d_model + 4 * (2 * f.d_model + 4 + 2 * f.n_heads))
    if not cfg.has("spectrum"):
        spec = 0.0
    elif f.spectrum_encoder == "mlp":  # input, each hidden layer (pre- and post-GELU, dropout mask)
        spec = b * ((f.spectrum_bins + f.spectrum_context) * 4
                    + f.spectrum_layers * (2 + (1 if f.spectrum_dropout else 0)) * f.spectrum_hidden * 4)
    else:
        spec = b * (f.spectrum_bins * 4 + 3 * f.spectrum_channels * f.spectrum_bins * 4
                    + (f.spectrum_channels * SPECTRUM_POSITIONS + f.spectrum_context) * 4)
    small = b * (2 * f.catalog_features * 4 + 2 * f.d_model * 4) + b * tok * f.d_model * 4 * 4
    lm_loss = loss_elems * 4 + b * (s - 1) * 8 if cfg.has("text") else 0.0  # fp32 log-softmax + int64 targets
    if cfg.heads is not None and hasattr(cfg.heads, "activation_bytes"):  # heads that know their own
        heads = float(cfg.heads.activation_bytes(b, f.d_model))
    else:
        heads = b * (f.d_model + (cfg.heads.n_outputs if cfg.heads is not None else 0)) * 4
    out["fusion_and_heads"] = f.n_layers * fusion_layer + spec + small + heads + lm_loss
    return out, recompute + rec_peak


# --------------------------------------------------------------------------- FLOPs


def flops_per_sample(cfg, batch: BatchShape, plan: Plan) -> dict[str, float]:
    """Returns training FLOPs (forward + backward) per sample by component (the components the
    model builds)."""
    counts = component_counts(cfg)
    mult = 8 if plan.activation_checkpointing else 6
    out: dict[str, float] = {}
    if cfg.has("text"):
        c, s = cfg.llm, batch.seq_len
        out["llm"] = mult * counts["llm"] * s + (mult // 2) * 2 * c.n_layers * c.hidden * s * s
    if cfg.has("climate"):
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
        out["datacube_cnn"] = (mult / 2) * conv + mult * vit_params * tokens
    if cfg.has("graph"):
        g = cfg.graph
        width = g.hidden * g.heads
        out["graph_vae"] = (mult * counts["graph_vae"] * batch.graph_nodes
                            + mult * g.n_layers * (batch.graph_edges + batch.graph_nodes) * width)
    out["fusion_and_heads"] = mult * counts["fusion_and_heads"] * (1 + len(cfg.modalities))
    return out


def input_bytes(cfg, batch: BatchShape) -> float:
    """Bytes of one micro-batch on the device, for the modalities the model builds: token ids and
    mask (int64), the datacube (fp32), graph node features (fp32), edge index and batch vector
    (int64), spectrum and catalog rows."""
    dc, b = cfg.datacube, batch.micro_batch_size
    per_sample = 2 * cfg.fusion.catalog_features * 4
    if cfg.has("text"):
        per_sample += 2 * batch.seq_len * 8
    if cfg.has("climate"):
        per_sample += dc.variables * dc.levels * dc.lat * dc.lon * 4
    if cfg.has("graph"):
        per_sample += batch.graph_nodes * (cfg.graph.node_features * 4 + 8) + batch.graph_edges * 16
    if cfg.has("spectrum"):
        per_sample += (cfg.fusion.spectrum_bins + cfg.fusion.spectrum_context) * 4
    return b * per_sample


def _largest_parameter(cfg) -> int:
    return max((n for _, _, n in parameter_inventory(cfg)), default=0)


def _largest_block_params(cfg) -> int:
    """Parameters of the largest FSDP unit (one transformer block / CNN stage / GAT layer / fusion
    layer) of the components the model builds."""
    candidates = [12 * cfg.fusion.d_model**2]
    if cfg.has("text"):
        c = cfg.llm
        candidates += [c.hidden * c.n_heads * c.head_dim * 2 + 2 * c.hidden * c.n_kv_heads * c.head_dim
                       + 3 * c.hidden * c.intermediate, c.vocab_size * c.hidden]
    if cfg.has("climate"):
        dc = cfg.datacube
        top = dc.base_channels * 2 ** min(dc.depth - 1, dc.max_doublings)
        candidates += [27 * 2 * top * top, 12 * dc.d_model**2]
    if cfg.has("graph"):
        width = cfg.graph.hidden * cfg.graph.heads
        candidates.append(2 * width * width)
    return max(candidates)


def transformer_upper_bound_steps_per_s(n_params: float, tokens_per_step: int, devices: int, peak: float,
                                        recompute: bool = False) -> float:
    """Returns the physical ceiling on optimizer steps/s: devices x peak / (6 or 8 x N x tokens)."""
    return devices * peak / ((8 if recompute else 6) * n_params * tokens_per_step)
