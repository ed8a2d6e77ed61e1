"""Memory of a training step on the device this runs on: analytical estimate, measured probe, and
a full measurement, side by side.

On CUDA, for each configuration: the estimate's predicted peak (``memory.estimate``: peak
allocated and reserved), the probe's (``memory.probe``: depth-reduced copies, two real steps,
extrapolated in depth) and the full model's measured peaks (``torch.cuda.max_memory_allocated`` /
``max_memory_reserved`` over two steps of forward, backward and optimizer step), with the errors
of estimate and probe against the measurement. Configurations of the kinds the estimator must hold
for: presets small/medium and an LLM-dominated ``wide`` variant; fp32 and bf16-mixed; adamw and
adamw8bit; checkpointing off/on; micro-batch 1-16; sequence 128-1024 (a configuration that does not
fit the device is reported as OOM).

On CPU (no allocator peak) it prints the CPU comparison: states + saved activations of estimate,
probe and one full measured step, for tiny/small configurations.

Both first print the recorded H100 measurements (``tests/data/measurements``, a copy of
``../shared/measurements/h100_memory_2026-11-23.json``) against the current estimate.

Batches: ``--batches real`` (default) builds the smoke dataset from the shipped catalog snapshot
(needs clero and cobra); ``--batches synthetic`` uses ``models.synthetic.synthetic_batch`` and says
so on every line (memory depends on shapes, not values).

Usage: .venv/bin/python benchmarks/memory_gpu.py [--batches real|synthetic] [--steps 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch

from astrobio_lib import memory
from astrobio_lib.models.presets import get_preset
from astrobio_lib.tasks import get as get_task

REPO = Path(__file__).resolve().parent.parent
RECORDED = REPO / "tests" / "data" / "measurements" / "h100_memory_2026-11-23.json"

CUDA_CONFIGS = [
    # preset, precision, optimizer, checkpointing, micro-batch, seq
    ("small", "bf16-mixed", "adamw", False, 8, 256),
    ("small", "fp32", "adamw", False, 8, 512),
    ("small", "bf16-mixed", "adamw8bit", True, 16, 1024),
    ("small", "fp32", "adamw8bit", True, 1, 128),
    ("medium", "bf16-mixed", "adamw8bit", False, 4, 512),
    ("medium", "bf16-mixed", "adamw", True, 8, 512),
    ("medium", "bf16-mixed", "adamw8bit", False, 1, 1024),
    ("medium", "bf16-mixed", "adamw8bit", True, 16, 512),
    ("medium", "fp32", "adamw8bit", False, 2, 256),
    ("wide", "bf16-mixed", "adamw8bit", False, 4, 512),
    ("wide", "bf16-mixed", "adamw8bit", True, 8, 1024),
]
CPU_CONFIGS = [
    ("tiny", "fp32", "adamw", False, 4, 128),
    ("tiny", "fp32", "adamw8bit", True, 4, 256),
    ("small", "fp32", "adamw", False, 2, 128),
    ("small", "fp32", "adamw", True, 2, 256),
]


def preset(name: str, ckpt: bool = False):
    """The presets of the recorded measurements, as the model with every modality (the habitability
    task's): ``wide`` is small with a wide, shallow LLM."""
    full = get_task("habitability").model
    if name == "wide":
        cfg = full(get_preset("small", activation_checkpointing=ckpt))
        cfg.llm = dataclasses.replace(cfg.llm, vocab_size=32000, hidden=4352, n_layers=6, n_heads=64, n_kv_heads=8,
                                      intermediate=11904, max_seq_len=1024)
        return cfg
    return full(get_preset(name, activation_checkpointing=ckpt))


class Batches:
    """Real smoke batches (every sample with every modality) or, when asked, SYNTHETIC ones."""

    def __init__(self, kind: str):
        self.kind, self.ds, self._tmp = kind, None, None
        if kind == "real":
            from astrobio_lib.config import DataConfig
            from astrobio_lib.data import catalog
            from astrobio_lib.data.build import build_dataset
            from astrobio_lib.data.loader import PlanetDataset

            planets, prov = catalog.load_catalog("auto", os.environ.get("ASTROBIO_CATALOG"))
            print(prov.banner())
            self._tmp = tempfile.TemporaryDirectory()
            build_dataset(planets, prov, DataConfig(text_max_len=1024), 0, self._tmp.name)
            self.ds = PlanetDataset(self._tmp.name)
            self.full = [self.ds[i] for i in range(len(self.ds))
                         if self.ds[i]["climate"] is not None and bool(self.ds[i]["has_spectrum"])]
        else:
            print("batches: SYNTHETIC (models.synthetic.synthetic_batch) — memory depends on shapes, not values")

    def get(self, cfg, mb: int, seq: int):
        if self.kind == "real":
            from astrobio_lib.data.loader import Collate

            batch = Collate(self.ds.graphs)((self.full * mb)[:mb])
            have = batch["text_ids"].shape[1]
            if have < seq:  # pad to the asked length: the memory of a full-length batch
                pad = torch.zeros(mb, seq - have, dtype=batch["text_ids"].dtype)
                batch["text_ids"] = torch.cat([batch["text_ids"], pad], 1)
                batch["text_mask"] = torch.cat([batch["text_mask"], torch.zeros_like(pad, dtype=torch.bool)], 1)
            batch["text_ids"], batch["text_mask"] = batch["text_ids"][:, :seq], batch["text_mask"][:, :seq]
        else:
            from astrobio_lib.models.synthetic import synthetic_batch

            batch = synthetic_batch(cfg, batch_size=mb, seq_len=seq, seed=0, nodes_per_graph=72)
        g = batch["graph"]
        shape = memory.BatchShape(mb, seq, 1, g.num_nodes // mb, g.edge_index.shape[1] // mb)
        return batch, shape


def recorded() -> None:
    data = json.loads(RECORDED.read_text())
    h100 = memory.Hardware(memory.DEVICES["H100 SXM"])
    print("recorded H100 measurements (torch 2.11 + CUDA 13) vs the current estimate:")
    print(f"{'config':<44} {'est alloc':>9} {'meas':>7} {'err%':>6} {'est resv':>9} {'meas':>7} {'err%':>6}  peak at")
    for r in data["rows"]:
        plan = memory.Plan(precision=r["precision"], optimizer=r["optimizer"], activation_checkpointing=r["ckpt"])
        est = memory.estimate(preset(r["preset"], r["ckpt"]), plan, memory.BatchShape(r["mb"], r["seq"], 1), h100)
        name = f"{r['preset']} {plan.name} mb{r['mb']} s{r['seq']}"
        print(f"{name:<44} {est.peak_allocated / 1e9:>9.3f} {r['peak_alloc_gb']:>7.3f} "
              f"{100 * (est.peak_allocated / 1e9 / r['peak_alloc_gb'] - 1):>+6.1f} {est.peak_reserved / 1e9:>9.3f} "
              f"{r['peak_reserved_gb']:>7.3f} {100 * (est.peak_reserved / 1e9 / r['peak_reserved_gb'] - 1):>+6.1f}  "
              f"{est.peak_phase}")


def on_cuda(batches: Batches, steps: int) -> None:
    name = torch.cuda.get_device_name(0)
    known = memory.device_for_name(name)
    hw = memory.Hardware(known or memory.Device(name, torch.cuda.get_device_properties(0).total_memory, 0, 0, True, "?"))
    print(f"\non {name} (torch {torch.__version__}), {steps} steps per measurement, batches {batches.kind.upper()}")
    print(f"{'config':<44} {'est':>7} {'probe':>7} {'meas':>7} {'est%':>6} {'probe%':>6} | {'est rsv':>7} "
          f"{'prb rsv':>7} {'meas rsv':>8} {'est%':>6} {'probe%':>6}")
    worst = {"est": [], "probe": []}
    for pname, prec, opt, ckpt, mb, seq in CUDA_CONFIGS:
        cfg = preset(pname, ckpt)
        plan = memory.Plan(precision=prec, optimizer=opt, activation_checkpointing=ckpt)
        label = f"{pname} {plan.name} mb{mb} s{seq}"
        batch, shape = batches.get(cfg, mb, seq)
        est = memory.estimate(cfg, plan, shape, hw)
        try:
            pr = memory.probe(cfg, plan, batch, device="cuda", steps=steps)
            full = memory.measure_step_peak(cfg, plan, batch, steps=steps)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            print(f"{label:<44} OOM (estimate {est.peak_allocated / 1e9:.2f} GB allocated)")
            continue
        e, p, m = est.peak_allocated / 1e9, pr.peak_allocated / 1e9, full["peak_allocated"] / 1e9
        er, pres, mr = est.peak_reserved / 1e9, pr.peak_reserved / 1e9, full["peak_reserved"] / 1e9
        worst["est"].append(100 * (e / m - 1))
        worst["probe"].append(100 * (p / m - 1))
        print(f"{label:<44} {e:>7.3f} {p:>7.3f} {m:>7.3f} {100 * (e / m - 1):>+6.1f} {100 * (p / m - 1):>+6.1f} | "
              f"{er:>7.3f} {pres:>7.3f} {mr:>8.3f} {100 * (er / mr - 1):>+6.1f} {100 * (pres / mr - 1):>+6.1f}")
    for k, errs in worst.items():
        if errs:
            print(f"{k}: peak allocated error from {min(errs):+.1f}% to {max(errs):+.1f}% over {len(errs)} configurations "
                  f"(goal: within +-10%, none more than 5% under)")


def on_cpu(batches: Batches, steps: int) -> None:
    print("\non CPU (no allocator peak): states + saved activations, estimate / probe / one measured step"
          f" — this is the CPU view, not a GPU claim; batches {batches.kind.upper()}")
    print(f"{'config':<40} {'estimate MB':>12} {'probe MB':>10} {'measured MB':>12} {'est%':>6} {'probe%':>7}")
    for pname, prec, opt, ckpt, mb, seq in CPU_CONFIGS:
        cfg = preset(pname, ckpt)
        plan = memory.Plan(precision=prec, optimizer=opt, activation_checkpointing=ckpt)
        batch, shape = batches.get(cfg, mb, seq)
        table = memory.compare_on_this_machine(cfg, plan, batch, shape, memory.Hardware(None), steps=steps)
        est, pr, meas = table["states_and_saved_activations_GB"] * 1e3
        print(f"{pname + ' ' + plan.name + f' mb{mb} s{seq}':<40} {est:>12.2f} {pr:>10.2f} {meas:>12.2f} "
              f"{100 * (est / meas - 1):>+6.1f} {100 * (pr / meas - 1):>+7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", choices=("real", "synthetic"), default="real")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    recorded()
    batches = Batches(args.batches)
    if torch.cuda.is_available():
        on_cuda(batches, args.steps)
    else:
        on_cpu(batches, args.steps)


if __name__ == "__main__":
    main()
