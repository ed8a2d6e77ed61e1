"""Memory estimator vs measurement on this CPU.

For each configuration: build the model, run one real training step on a real smoke batch
(:func:`astrobio_lib.memory.measure`: exact state bytes + saved-tensor hooks), estimate the same
configuration (:func:`astrobio_lib.memory.estimate`, no weights), and print both with the error in
%. Configurations: checkpointing off/on x two sequence lengths x two micro-batch sizes on the tiny
preset, four on the small preset, and the 8-bit optimizer on both. The compared quantity is what
the CPU measurement observes: parameters + gradients + optimizer state + stored activations.
The last line is the worst error. Goal: every error within +-10% and no estimate more than 5% under.

Also prints how long estimating the seeds' full ~17B configuration takes.

Usage: .venv/bin/python benchmarks/memory_estimator.py
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from astrobio_lib import memory
from astrobio_lib.config import DataConfig
from astrobio_lib.data import catalog
from astrobio_lib.data.build import build_dataset
from astrobio_lib.data.loader import Collate, PlanetDataset
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.tasks import get as get_task

CONFIGS = [
    # preset, checkpointing, micro-batch, seq len, optimizer
    *[("tiny", ck, mb, s, "adamw") for ck in (False, True) for s in (128, 256) for mb in (2, 4)],
    *[("small", ck, mb, s, "adamw") for ck in (False, True) for mb, s in ((2, 128), (4, 256))],
    ("tiny", False, 4, 256, "adamw8bit"),
    ("small", True, 2, 256, "adamw8bit"),
]


def batch_for(ds: PlanetDataset, micro_batch: int, seq_len: int):
    """A real smoke batch in which every sample has every modality (the estimator's worst case)."""
    full = [ds[i] for i in range(len(ds)) if ds[i]["climate"] is not None and bool(ds[i]["has_spectrum"])]
    items = (full * micro_batch)[:micro_batch]
    batch = Collate(ds.graphs)(items)
    batch["text_ids"], batch["text_mask"] = batch["text_ids"][:, :seq_len], batch["text_mask"][:, :seq_len]
    nodes = batch["graph"].num_nodes // micro_batch
    edges = batch["graph"].edge_index.shape[1] // micro_batch
    return batch, nodes, edges


def main() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    planets, prov = catalog.load_catalog("auto", os.environ.get("ASTROBIO_CATALOG"))
    print(prov.banner())
    worst = 0.0
    worst_under = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(planets, prov, DataConfig(), 0, tmp)
        ds = PlanetDataset(tmp)
        print(f"{'preset':<6} {'ckpt':<5} {'mb':>3} {'seq':>4} {'optimizer':<10} {'estimate MB':>12} "
              f"{'measured MB':>12} {'error %':>8}   activations est/meas MB")
        for preset, ckpt, mb, seq, opt in CONFIGS:
            cfg = get_task("habitability").model(get_preset(preset, activation_checkpointing=ckpt))
            torch.manual_seed(0)
            model = build_model(cfg, seed=0)
            batch, nodes, edges = batch_for(ds, mb, seq)
            plan = memory.Plan(precision="fp32", optimizer=opt, activation_checkpointing=ckpt)
            meas = memory.measure(model, batch, plan)
            est = memory.estimate(cfg, plan, memory.BatchShape(mb, seq, 1, nodes, edges))
            err = 100 * (est.measured_comparable / meas.comparable - 1)
            worst = max(worst, abs(err))
            worst_under = min(worst_under, err)
            print(f"{preset:<6} {str(ckpt):<5} {mb:>3} {seq:>4} {opt:<10} {est.measured_comparable / 1e6:>12.2f} "
                  f"{meas.comparable / 1e6:>12.2f} {err:>+8.2f}   "
                  f"{est.device['activations'] / 1e6:.2f} / {meas.device['activations'] / 1e6:.2f}")
    full = get_preset("seeds_full", activation_checkpointing=True)
    t0 = time.perf_counter()
    memory.estimate(full, memory.Plan(sharding="fsdp2", world_size=2, cpu_offload="params_optimizer",
                                      activation_checkpointing=True), memory.BatchShape(1, 512, 32),
                    memory.hardware_from("RTX A5000", 2, 24, None))
    print(f"estimating the seeds' full ~17B configuration: {time.perf_counter() - t0:.2f} s (meta device, no weights)")
    print(f"worst error: {worst:.2f}% (most under: {worst_under:+.2f}%; goal within +-10%, none more than 5% under)")


if __name__ == "__main__":
    main()
