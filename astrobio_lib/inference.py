"""Running a model over data: moving a batch to the device, and the one loop that runs a model over
a dataset in batches (validation, predictions, evaluation)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from astrobio_lib.precision import autocast_for, input_dtype


def to_device(batch: dict[str, Any], device: torch.device, float_dtype: Optional[torch.dtype] = None) -> dict[str, Any]:
    """Moves a batch to ``device``; with ``float_dtype`` (pure bf16 training) floating inputs are cast
    too, so model and inputs agree."""
    def move(v):
        if float_dtype is not None and isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.to(device, dtype=float_dtype, non_blocking=True)
        if float_dtype is not None and hasattr(v, "apply") and hasattr(v, "to"):  # a PyG Batch
            v = v.to(device, non_blocking=True)
            return v.apply(lambda t: t.to(float_dtype) if t.is_floating_point() else t)
        return v.to(device, non_blocking=True) if hasattr(v, "to") else v

    return {k: move(v) for k, v in batch.items()}


def batch_size_of(batch: dict[str, Any]) -> int:
    """Samples in a batch (every batch carries its catalog rows)."""
    return int(batch["catalog"].shape[0])


def complete_items(dataset, collate: Callable[[list], dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` items of ``dataset`` that carry every modality their task's batch flags
    (``has_*`` all true, no missing graph): what a memory measurement of the worst case needs."""
    found = []
    for i in range(len(dataset)):
        item = dataset[i]
        batch = collate([item])
        if all(bool(v.all()) for k, v in batch.items() if k.startswith("has_")) and \
                ("has_graph" not in batch or batch.get("graph") is not None):
            found.append(item)
            if len(found) >= limit:
                break
    return found


@torch.no_grad()
def run_batches(model, dataset, collate: Callable[[list], dict[str, Any]], batch_size: int,
                keys: Sequence[str] = (), device: Any = "cpu", precision: str = "fp32",
                edit: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Runs ``model`` (in eval mode, restored afterwards) over ``dataset`` in order, ``batch_size``
    items at a time; returns (the outputs named in ``keys``, concatenated over items as float numpy
    arrays; the mean of every ``loss*`` output over items). ``edit`` changes each collated batch
    before the model sees it (e.g. hides a modality for an ablation)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    sums: dict[str, float] = {}
    n = 0
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            batch = collate(items)
            if edit is not None:
                batch = edit(batch)
            batch = to_device(batch, device, input_dtype(precision))
            with autocast_for(precision, device):
                out = model(batch)
            for k in keys:
                outputs[k].append(out[k].detach().float().cpu().numpy())
            for k, v in out.items():
                if k.startswith("loss"):
                    sums[k] = sums.get(k, 0.0) + float(v) * len(items)
            n += len(items)
    finally:
        model.train(was_training)
    return ({k: np.concatenate(v) if v else np.zeros(0) for k, v in outputs.items()},
            {k: v / max(n, 1) for k, v in sums.items()})
