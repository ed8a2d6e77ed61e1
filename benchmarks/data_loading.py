"""Data-loading rate vs the smoke training consumption rate.

Prints samples/s of the DataLoader (collate included: PyG batching of the graphs, datacubes,
spectra, text) for the smoke shapes (256 planets, micro-batch 4) and the reference shapes (every
catalog planet, CLERO's extended domain, micro-batch 8), with 0 and 2 worker processes, next to
the samples/s a training step of the tiny preset consumes (forward + backward + AdamW step,
micro-batch 4, fp32, this CPU). Until the training loop lands, that plain step stands in for the
loop's own consumption rate. The last line is the ratio for the smoke shapes.

Usage: .venv/bin/python benchmarks/data_loading.py [--catalog PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from astrobio_lib.config import DataConfig
from astrobio_lib.data import catalog
from astrobio_lib.data.build import build_dataset
from astrobio_lib.data.loader import PlanetDataset, make_loader
from astrobio_lib.models.fusion import build_model
from astrobio_lib.models.presets import get_preset
from astrobio_lib.tasks import get as get_task


def loading_rate(ds: PlanetDataset, batch_size: int, workers: int, epochs: int = 3) -> float:
    loader = make_loader(ds, batch_size, shuffle=True, seed=0, num_workers=workers)
    next(iter(loader))  # start the workers before timing
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["catalog"].shape[0]
    return n / (time.perf_counter() - t0)


def consumption_rate(ds: PlanetDataset, micro_batch: int = 4, steps: int = 12) -> float:
    model = build_model(get_task("habitability").model(get_preset("tiny")), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = [b for _, b in zip(range(steps + 2), make_loader(ds, micro_batch, seed=1), strict=False)]
    for b in batches[:2]:  # warm-up
        model(b)["loss"].backward()
    opt.zero_grad()
    t0 = time.perf_counter()
    for b in batches[2:]:
        model(b)["loss"].backward()
        opt.step()
        opt.zero_grad()
    return micro_batch * (len(batches) - 2) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default=os.environ.get("ASTROBIO_CATALOG"))
    args = parser.parse_args()
    planets, prov = catalog.load_catalog("auto", args.catalog)
    print(prov.banner())
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        smoke = Path(tmp) / "smoke"
        build_dataset(planets, prov, DataConfig(), 0, smoke)
        ds_smoke = PlanetDataset(smoke, "train")
        ref = Path(tmp) / "reference"
        t0 = time.perf_counter()
        build_dataset(planets, prov, DataConfig(n_planets=0, climate_domain="extended"), 0, ref)
        print(f"reference build (all {len(planets)} planets, extended climate domain): {time.perf_counter() - t0:.1f} s")
        ds_ref = PlanetDataset(ref, "train")
        print(f"{'shapes':<10} {'planets':>8} {'cubes':>6} {'batch':>6} {'workers':>8} {'samples/s':>10}")
        rates = {}
        for label, ds, bs in (("smoke", ds_smoke, 4), ("reference", ds_ref, 8)):
            cubes = int((ds.tensors["climate_index"][ds.indices] >= 0).sum())
            for workers in (0, 2):
                rates[(label, workers)] = r = loading_rate(ds, bs, workers)
                print(f"{label:<10} {len(ds):>8} {cubes:>6} {bs:>6} {workers:>8} {r:>10.1f}")
        consume = consumption_rate(ds_smoke)
    print(f"smoke training consumption (tiny preset, plain fp32 AdamW step, micro-batch 4): {consume:.1f} samples/s")
    best = max(rates[("smoke", 0)], rates[("smoke", 2)])
    print(f"smoke loading / consumption: {best / consume:.1f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
