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
    return optimizer_for_groups(param_groups(model, weight_decay), name, lr, next(model.parameters()).device, betas)


def optimizer_for_groups(groups: list[dict], name: str, lr: float, device: torch.device,
                         betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.Optimizer:
    """Returns the named optimizer over prepared parameter groups (also FSDP2's local shards).

    Raises:
        ValueError: unknown name.
        RuntimeError: ``paged_adamw8bit`` without CUDA.
    """
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


SCHEDULES = ("cosine", "onecycle", "constant")


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, max_steps: int,
                    warmup_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Returns the learning-rate schedule: linear warmup then cosine decay to 10% (``cosine``) or
    flat (``constant``), or torch's ``OneCycleLR`` (its own 30% warmup).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=max(max_steps, 2))
    if kind not in SCHEDULES:
        raise ValueError(f"schedule={kind!r}: one of {', '.join(SCHEDULES)}")
    cosine = kind == "cosine"
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(warmup_steps, max_steps, cosine))


class _WarmupCosine:
    """Picklable LR multiplier (a lambda would not survive a checkpoint)."""

    def __init__(self, warmup: int, total: int, cosine: bool):
        self.warmup, self.total, self.cosine = warmup, max(total, 1), cosine

    def __call__(self, step: int) -> float:
        import math

        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if not self.cosine:
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
