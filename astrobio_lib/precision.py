"""Precision helpers shared by the trainer, the evaluation and the memory probe: the autocast
context of a ``precision`` setting, the dtype inputs are cast to, and the compute dtype of a frozen
pretrained base."""

from __future__ import annotations

from typing import Optional

import torch

PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed", "bf16")


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


def input_dtype(precision: str) -> Optional[torch.dtype]:
    """The dtype floating inputs are cast to (pure bf16 training), or None: as they come."""
    return torch.bfloat16 if precision == "bf16" else None


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a frozen pretrained base computes in: bf16 under bf16 / bf16-mixed, else fp32."""
    return torch.bfloat16 if precision in ("bf16", "bf16-mixed") else torch.float32
