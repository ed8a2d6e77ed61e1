"""Training throughput and model-FLOPs utilisation: our loop vs a plain loop vs compute only.

For each preset (default: `small medium` on CUDA, `tiny` on CPU) and compile off/on, prints samples/s
(and MFU on a GPU whose dense bf16 peak `memory.DEVICES` knows) for
  (a) ours:     `astrobio_lib.train.train` (metrics, progress lines, memory stats, checkpoints; best of
              two runs, so both loops find compiled code in the cache),
  (b) plain:    a plain PyTorch loop over the same model, batches, collate and optimizer,
  (c) compute:  the same steps with every batch collated and on the device beforehand,
then the ratios ours/plain (the loop's overhead) and plain/compute (the input pipeline's stall).
The same FLOPs formula as the memory budget (`memory.flops_per_sample`) gives MFU; on a CPU no MFU
is claimed. Targets (issue: throughput on CUDA): ours/plain >= 0.97, plain/compute >= 0.95; medium
with compile >= 40% MFU on an H100-class GPU (>= 35% on Ampere), small >= 15%.

Usage: .venv/bin/python benchmarks/gpu_throughput.py [--presets tiny] [--steps 30] [--micro 8 --accum 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from astrobio_lib import config, memory, tasks
from astrobio_lib.data.build import build_for_config
from astrobio_lib.data.loader import Collate, PlanetDataset
from astrobio_lib.optim import build_optimizer
from astrobio_lib.train import compile as compile_mod
from astrobio_lib.train.data_order import ResumableOrder
from astrobio_lib.train.loop import accumulate, plan_for, seed_everything, to_device, train

WARMUP = 5


def make_cfg(run_dir: Path, preset: str, steps: int, micro: int, accum: int, precision: str, compile_on: bool):
    return config.from_mapping({
        "run_dir": str(run_dir), "catalog_source": "snapshot", "model_preset": preset, "max_steps": steps,
        "micro_batch_size": micro, "grad_accum_steps": accum, "precision": precision,
        "optimizer": "adamw", "compile": "on" if compile_on else "off", "val_every_steps": steps + 1,
        "checkpoint_every_steps": 25, "wandb_mode": "disabled", "log_every_steps": 10, "n_planets": 256,
        "label_mc_samples": 16, "gpu_name": "cpu", "task": "habitability", "warmup_steps": 10})


def ours(cfg) -> float:
    train(cfg)
    records = [json.loads(line) for line in (Path(cfg.run.run_dir) / "metrics.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["elapsed_s"] for r in records if "loss" in r}
    steps = cfg.train.max_steps
    return (steps - WARMUP) * cfg.train.micro_batch_size * cfg.train.grad_accum_steps / (elapsed[steps] - elapsed[WARMUP])


def plain(cfg, device: torch.device, staged: bool) -> float:
    """samples/s of the plainest loop; ``staged``: every batch collated and on the device first."""
    seed_everything(0)
    t = cfg.train
    ds = PlanetDataset(Path(cfg.run.run_dir) / "data", "train")
    collate = Collate(ds.graphs)
    model = tasks.build_model(cfg.flat(), device)
    if compile_mod.wanted(t.compile, device):
        compile_mod.compile_regions(model)
    opt = build_optimizer(model, t.optimizer, t.learning_rate)
    stream = ResumableOrder(len(ds), t.micro_batch_size, 0).epochs(10_000)

    def next_batches():
        return [collate([ds[j] for j in idx]) for (idx, _), _ in zip(stream, range(t.grad_accum_steps), strict=False)]

    prepared = [[to_device(b, device) for b in next_batches()] for _ in range(t.max_steps)] if staged else None
    t0 = None
    for step in range(1, t.max_steps + 1):
        if step == WARMUP + 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batches = prepared[step - 1] if staged else next_batches()
        accumulate(model, batches, device, t.precision)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (t.max_steps - WARMUP) * t.micro_batch_size * t.grad_accum_steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--presets", nargs="+", default=["small", "medium"] if cuda else ["tiny"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--accum", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    precision = "bf16-mixed" if cuda else "fp32"
    gpu = memory.device_for_name(torch.cuda.get_device_name()) if cuda else None
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; precision {precision}; micro {args.micro} x "
          f"accum {args.accum}; {args.steps} steps ({WARMUP} warm-up); "
          + (f"MFU against {gpu.name} {gpu.peak_flops_bf16 / 1e12:.0f} TFLOP/s" if gpu else "no MFU claim"))
    print(f"{'preset':<8} {'compile':<7} {'ours':>9} {'plain':>9} {'compute':>9} {'ours/plain':>10} "
          f"{'plain/compute':>13} {'MFU ours':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for compile_on in (False, True):
                run = Path(tmp) / f"{preset}-{compile_on}"
                cfg = make_cfg(run, preset, args.steps, args.micro, args.accum, precision, compile_on)
                build_for_config(cfg)  # notebook 01's part (not timed)
                first = ours(cfg)
                b = plain(cfg, device, staged=False)
                c = plain(cfg, device, staged=True)
                # ours again, in a fresh run folder: with compile on, the first run also paid for compiling
                # shapes first seen after the warm-up (the epoch's shorter last micro-batch); now all three
                # find the compiled code in the cache
                again = make_cfg(Path(tmp) / f"{preset}-{compile_on}-again", preset, args.steps, args.micro, args.accum,
                                 precision, compile_on)
                build_for_config(again)
                a = max(first, ours(again))
                mcfg = tasks.model_config(cfg.flat())
                flops = sum(memory.flops_per_sample(mcfg, memory.BatchShape(args.micro, cfg.data.text_max_len,
                                                                            args.accum), plan_for(cfg, 1)).values())
                util = memory.mfu(a, flops, gpu.peak_flops_bf16 if gpu else None)
                print(f"{preset:<8} {'on' if compile_on else 'off':<7} {a:>9.1f} {b:>9.1f} {c:>9.1f} {a / b:>10.3f} "
                      f"{b / c:>13.3f} {f'{100 * util:.1f}%' if util is not None else 'n/a':>9}")


if __name__ == "__main__":
    main()
