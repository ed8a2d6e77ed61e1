"""Memory budget: per-parameter state bytes and the hardware table.

This module holds the pinned rules the full estimator (activations per layer, FSDP sharding,
offload, plan search, measurement) builds on. Sources: ``../shared/SCIENCE.md`` — the ZeRO paper
(Rajbhandari et al. 2020) for 16 bytes/parameter of mixed-precision Adam, the bitsandbytes
block-wise 8-bit optimizer (Dettmers et al. 2022) for ~2.04 bytes/parameter, and vendor data
sheets for device peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9  # memory is quoted in decimal GB, as vendors do
GIB = 1024**3


@dataclass(frozen=True)
class Device:
    """A training device: memory (bytes), dense bf16/fp16 tensor peak (FLOP/s), bandwidth (B/s)."""

    name: str
    memory_bytes: float
    peak_flops_bf16: float
    memory_bandwidth: float
    source: str


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("RTX A5000", 24 * GB, 111e12, 768e9,
               "NVIDIA RTX A5000 data sheet: 256 tensor cores x 128 FMA x 2 x 1.695 GHz"),
        Device("RTX 4090", 24 * GB, 165e12, 1008e9, "NVIDIA Ada whitepaper (fp32 accumulate)"),
        Device("A100 80GB SXM", 80 * GB, 312e12, 2.0e12, "NVIDIA A100 data sheet"),
        Device("H100 SXM", 80 * GB, 989e12, 3.35e12, "NVIDIA H100 data sheet (dense)"),
    )
}

# The seeds' stated component sizes (parameters), for comparison with our presets, whose counts
# come from building them on the meta device (astrobio_lib.models.presets).
SEEDS_STATED_PARAMETERS = {"llm": 13.14e9, "graph_vae": 1.2e9, "datacube_cnn": 2.5e9}

_WEIGHT_BYTES = {"fp32": 4, "bf16-mixed": 4, "fp16-mixed": 4, "bf16": 2}


def optimizer_state_bytes_per_param(optimizer: str, numel: int = 1 << 20) -> float:
    """Returns optimizer-state bytes per parameter for a tensor of ``numel`` elements.

    AdamW (fp32 moments): 8. bitsandbytes 8-bit AdamW: 2 uint8 moments + one fp32 absmax per
    256-element block for each moment = 2 + 2*4/256 = 2.03125 (~2.04 with the quantile maps);
    tensors under 4096 elements keep 32-bit state (8 bytes).

    Raises:
        ValueError: unknown optimizer.
    """
    if optimizer == "adamw":
        return 8.0
    if optimizer in ("adamw8bit", "paged_adamw8bit"):
        return 8.0 if numel < 4096 else 2.0 + 2 * 4 / 256
    raise ValueError(f"optimizer={optimizer!r}: one of adamw, adamw8bit, paged_adamw8bit")


def state_bytes_per_param(precision: str, optimizer: str) -> dict[str, float]:
    """Returns the bytes per parameter of weights, gradients, fp32 master copy and optimizer
    state for a precision / optimizer pair (no sharding, no offload).

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
