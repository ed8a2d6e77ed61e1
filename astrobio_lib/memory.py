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
statistics and the log-sum-exp in fp32 (autocast); this rule is derived, not measured here (no
GPU on the development machine).

**Allowances** (stated, not measured): CUDA context 0.6 GB per device, allocator fragmentation
10% of tensor bytes, 3 GB of host RAM per process (Python, CUDA libraries), and the dataset held
in host RAM.

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

    @property
    def device_total(self) -> float:
        return sum(self.device.values())

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
                "flops_per_step": self.flops_per_step, "tokens_per_step": self.tokens_per_step}


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


def _llm_activation_elements(cfg, b: int, s: int, plan: Plan) -> tuple[float, float, float, float]:
    """Returns the LLM's per-micro-batch activation elements of one layer that may be stored in
    16 bit, those kept in fp32, the number of layers, and the elements of the fp32 log-softmax of
    the next-token loss (see the module docstring for each term)."""
    c = cfg.llm
    h, hkv, inter, a, L = c.hidden, c.n_kv_heads * c.head_dim, c.intermediate, c.n_heads, c.n_layers
    # per token, per layer: low-precision-able part and fp32-kept part
    low = 2 * h + (2 * h + 2 * hkv) + 4 * inter  # weighted norm outputs, SDPA q/k/v/out, SwiGLU
    f32 = 2 * (2 * h + 1) + a  # two RMSNorms (input, normalised output, rstd), log-sum-exp
    if plan.attention == "eager":
        low += 2 * a * s  # attention probabilities and softmax output per token
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


def activation_bytes(cfg, plan: Plan, batch: BatchShape) -> tuple[dict[str, float], float]:
    """Returns (stored activation bytes per component, recompute-peak bytes) for one micro-batch."""
    low_b = 4 if plan.precision == "fp32" else 2
    b, s = batch.micro_batch_size, batch.seq_len
    out: dict[str, float] = {}

    # LLM
    low, f32, n_layers, loss_elems = _llm_activation_elements(cfg, b, s, plan)
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
    f = cfg.fusion
    tok = 1 + 5
    fusion_layer = b * tok * (low_b * 14 * f.d_model + 4 * (2 * f.d_model + 4 + 2 * f.n_heads))
    spec = b * (f.spectrum_bins * 4 + 3 * f.spectrum_channels * f.spectrum_bins * 4 + f.spectrum_channels * 4)
    small = b * (2 * f.catalog_features * 4 + 2 * f.d_model * 4) + b * tok * f.d_model * 4 * 4
    lm_loss = loss_elems * 4 + b * (s - 1) * 8  # fp32 log-softmax + int64 targets
    out["fusion_and_heads"] = f.n_layers * fusion_layer + spec + small + b * (f.d_model + 2) * 4 + lm_loss
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

    acts, recompute = activation_bytes(cfg, plan, batch)
    device = {"parameters": weights / shard, "gradients": grads / shard, "optimizer": opt / shard,
              "master_fp32": 0.0, "activations": sum(acts.values()), "recompute_peak": recompute}
    # the gradient of the LM logits exists at the start of backward next to the stored activations
    device["logits_grad_peak"] = batch.micro_batch_size * (batch.seq_len - 1) * cfg.llm.vocab_size * 4
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
    if hardware.device is not None:
        tensors = sum(device.values())
        device["allocator_fragmentation"] = FRAGMENTATION * tensors
        device["cuda_context"] = CUDA_CONTEXT_BYTES
    fl = flops_per_sample(cfg, batch, plan)
    samples = batch.micro_batch_size * batch.grad_accum_steps * ws
    return Estimate(plan, batch, device, host, acts, counts, trainable, sum(fl.values()) * samples,
                    batch.seq_len * samples)


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
            reasons.append(f"{est.device_total / GB:.1f} GB per device > {100 * DEVICE_LIMIT:.0f}% of "
                           f"{hardware.device.memory_bytes / GB:.0f} GB")
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
    breakdown = ", ".join(f"{k} {v / GB:.2f}" for k, v in est.device.items() if v)
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
    """Returns GB per device by category (rows: plans) for a stacked bar chart."""
    import pandas as pd

    return pd.DataFrame({e.plan.name: {k: v / GB for k, v in e.device.items()} for e in estimates}).T.fillna(0.0)
