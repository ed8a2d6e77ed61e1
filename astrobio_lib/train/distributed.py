"""torchrun / DDP / FSDP2 (+ CPU offload) setup, gradient-sync control, sharded checkpoints.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU. DDP replicates the model
(``find_unused_parameters`` because a batch may lack a modality). FSDP2 applies ``fully_shard`` per
LLM block, datacube stage and ViT layer, GATv2 layer and fusion layer, then the root, with a
``MixedPrecisionPolicy`` (bf16 compute, fp32 reduce) and optionally ``CPUOffloadPolicy`` (pinned
memory only on CUDA). Gradients are synchronised only on the last micro-batch of a step. FSDP2 in one process (no
torchrun) runs in a one-process group. Sharded checkpoints are written by
:mod:`astrobio_lib.train.checkpoint`.

bitsandbytes' 8-bit optimizers reject FSDP2's DTensor parameters (bitsandbytes#1403):
:class:`LocalShardOptimizer` steps them on the local shards instead — plain tensors that share
storage with the DTensors, so the update lands in the sharded parameters.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(sharding: str = "none") -> DistInfo:
    """Initialises the process group when launched by torchrun; returns rank, world and device.

    ``sharding: fsdp2`` in a single process (no torchrun — the natural single-GPU choice for CPU
    offload) gets a one-process group on an in-memory store, so FSDP2 and DCP work unchanged.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend)
    if world > 1:
        return DistInfo(dist.get_rank(), world, local, device, dist.get_backend())
    if sharding == "fsdp2":
        if not dist.is_initialized():
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        return DistInfo(0, 1, local, device, dist.get_backend())
    return DistInfo(device=device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def wrap(model: nn.Module, sharding: str, info: DistInfo, precision: str, cpu_offload: str) -> nn.Module:
    """Returns the model wrapped for the plan (unchanged for one process without sharding).

    Raises:
        ValueError: an unknown sharding, or params offload without FSDP2.
    """
    if sharding == "none" and info.distributed:
        raise ValueError(f"sharding=none with {info.world_size} processes would train unsynchronised replicas: "
                         f"use sharding: ddp or fsdp2")
    if sharding == "none" or (sharding == "ddp" and not info.distributed):
        return model
    if sharding == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.local_rank] if info.device.type == "cuda" else None
        return DDP(model, device_ids=ids, find_unused_parameters=True)
    if sharding == "fsdp2":
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        kwargs: dict[str, Any] = {}
        if precision in ("bf16-mixed", "fp16-mixed"):
            dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        if cpu_offload == "params_optimizer":
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=info.device.type == "cuda")
        model.run_all_encoders = True  # every rank must run every sharded module
        for unit in model.shard_units():  # the repeated blocks of the encoders the task builds
            fully_shard(unit, **kwargs)
        fully_shard(model, **kwargs)
        return model
    raise ValueError(f"sharding={sharding!r}: none, ddp or fsdp2")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place: no wrapper)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, sharding: str, sync: bool) -> Iterator[None]:
    """Skips the gradient all-reduce / reduce-scatter on all but the last micro-batch."""
    if sync:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif sharding == "fsdp2" and hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


class LocalShardOptimizer:
    """Runs a (bitsandbytes) optimizer on the local shards of DTensor parameters.

    ``factory(params)`` builds the inner optimizer over plain tensors that share storage with each
    DTensor's local shard; :meth:`step` copies each DTensor gradient's local shard into them first.
    The state dict is the inner optimizer's (per rank: save with DCP or per-rank files).
    """

    def __init__(self, model: nn.Module, factory, param_groups: list[dict]):
        from torch.distributed.tensor import DTensor

        self.pairs: list[tuple[nn.Parameter, nn.Parameter]] = []
        local_groups = []
        for group in param_groups:
            local_params = []
            for p in group["params"]:
                local = nn.Parameter(p.to_local() if isinstance(p, DTensor) else p, requires_grad=True)
                self.pairs.append((p, local))
                local_params.append(local)
            local_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": local_params})
        self.inner = factory(local_groups)
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state

    def step(self) -> None:
        from torch.distributed.tensor import DTensor

        for p, local in self.pairs:
            if p.grad is None:
                local.grad = None
            else:
                local.grad = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
        self.inner.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p, local in self.pairs:
            p.grad = None
            local.grad = None

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
