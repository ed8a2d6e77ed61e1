"""Inference latency at batch 1 on this CPU: p50 / p95 over repeated forward passes.

Two input kinds: catalog parameters only (every other modality absent), and catalog + a climate
datacube (2 x 10 x 32 x 64); on the tiny and small presets, eval mode, no gradients. The seeds'
targets were < 100 ms and < 400 ms. Inputs are SYNTHETIC random numbers of the real shapes
(latency does not depend on the values).

Usage: .venv/bin/python benchmarks/inference_latency.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.models.synthetic import synthetic_batch
from astrobio_lib.tasks import get as get_task

KINDS = {
    "catalog only": ("climate", "graph", "spectrum", "text"),
    "catalog + datacube": ("graph", "spectrum", "text"),
}


def latency_ms(model, batch, repeats: int) -> tuple[float, float]:
    with torch.no_grad():
        for _ in range(10):  # warm-up
            model(batch)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch)
            times.append(1e3 * (time.perf_counter() - t0))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, eval, no grad")
    print(f"{'preset':<7} {'inputs':<20} {'p50 ms':>8} {'p95 ms':>8}")
    for preset in ("tiny", "small"):
        cfg = get_task("habitability").model(get_preset(preset))  # the model with every modality
        model = build_model(cfg, seed=0).eval()
        for kind, absent in KINDS.items():
            batch = synthetic_batch(cfg, batch_size=1, seq_len=16, missing=[(0, m) for m in absent])
            p50, p95 = latency_ms(model, batch, args.repeats)
            print(f"{preset:<7} {kind:<20} {p50:>8.2f} {p95:>8.2f}")


if __name__ == "__main__":
    main()
