"""Optimizer factory: bitsandbytes 8-bit AdamW (CPU too, bitsandbytes >= 0.50), paged 8-bit AdamW
(CUDA), torch AdamW (fused on CUDA). Norm scales, biases and other 1-D parameters get no weight
decay (decaying a norm's scale towards zero fights the normalisation)."""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Returns two groups: matrices / embeddings / conv kernels with ``weight_decay``, and every
    1-D parameter (biases, norm scales, attention vectors of size 1 x heads x C excepted) without."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or name.endswith(".bias") or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 0.01,
                    betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.Optimizer:
    """Returns the named optimizer over ``model``'s trainable parameters.

    Raises:
        ValueError: unknown name.
        RuntimeError: ``paged_adamw8bit`` without CUDA (paging needs CUDA unified memory).
    """
    groups = param_groups(model, weight_decay)
    device = next(model.parameters()).device
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type == "cuda")
    if name in ("adamw8bit", "paged_adamw8bit"):
        import bitsandbytes as bnb

        if name == "paged_adamw8bit":
            if device.type != "cuda":
                raise RuntimeError("optimizer=paged_adamw8bit pages optimizer state through CUDA unified "
                                   "memory: use adamw8bit on CPU")
            return bnb.optim.PagedAdamW8bit(groups, lr=lr, betas=betas)
        return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas)
    raise ValueError(f"optimizer={name!r}: one of {', '.join(OPTIMIZERS)}")
