"""Checkpoint stall: the share of training wall time blocked on checkpoints at a given interval.

The ``small`` preset (fp32 AdamW, its optimizer state allocated by a real step on a synthetic
batch — labelled synthetic: only the tensor sizes matter here) is checkpointed ``--saves`` times
by :class:`astrobio_lib.train.checkpoint.Checkpointer`, blocking and asynchronous. The stall of an
asynchronous save is what the training thread waits for (the host copy of the state, plus joining
the previous save if it is still running); the write, hash and publish run beside training.

stall share = stall per save / checkpoint interval. Goal: < 2% at a 5-minute interval.

Usage: .venv/bin/python benchmarks/checkpoint_stall.py [--preset small] [--interval-min 5] [--saves 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.models.synthetic import synthetic_batch
from astrobio_lib.optim import build_optimizer, build_scheduler
from astrobio_lib.tasks import get as get_task
from astrobio_lib.train import checkpoint as ckpt
from astrobio_lib.train.data_order import ResumableOrder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--interval-min", type=float, default=5.0)
    parser.add_argument("--saves", type=int, default=3)
    args = parser.parse_args()
    cfg = get_task("habitability").model(get_preset(args.preset))  # the model with every modality
    model = build_model(cfg, seed=0)
    opt = build_optimizer(model, "adamw", 3e-4)
    sched = build_scheduler(opt, "cosine", 1000, 10)
    batch = synthetic_batch(cfg, batch_size=2, seq_len=64, seed=0)  # SYNTHETIC batch: sizes only
    t0 = time.perf_counter()
    model(batch)["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - t0
    state = ckpt.TrainState(model, opt, sched, ResumableOrder(100, 2, 0), {"model_preset": args.preset})
    n_params = sum(p.numel() for p in model.parameters())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("blocking", "async"):
            cp = ckpt.Checkpointer(Path(tmp) / mode, keep=2, async_save=mode == "async")
            stalls, writes = [], []
            for _ in range(args.saves):
                state.counters["step"] += 1
                before = cp.stall_s
                cp.save(state)
                stalls.append(cp.stall_s - before)
                cp.wait()  # outside the measured stall: the next interval is minutes away
                writes.append(cp.last_save_s)
            size = next(Path(tmp, mode).glob("step_*.pt")).stat().st_size
            results[mode] = (statistics.median(stalls), statistics.median(writes), size)
    interval = 60 * args.interval_min
    print(f"preset {args.preset}: {n_params / 1e6:.1f}M parameters, checkpoint {results['async'][2] / 1e9:.2f} GB "
          f"(weights + fp32 AdamW moments); one training step here (batch 2 x 64 tokens, CPU) {step_s:.2f} s")
    for mode, (stall, write, _) in results.items():
        print(f"{mode:>8}: stall {stall:.2f} s per save (full write {write:.2f} s) -> "
              f"{100 * stall / interval:.2f}% of wall time at a {args.interval_min:g}-minute interval")
    share = 100 * results["async"][0] / interval
    print(f"stall share with checkpoint_async: {share:.2f}% (goal < 2%): {'MET' if share < 2 else 'NOT MET'}")


if __name__ == "__main__":
    main()
