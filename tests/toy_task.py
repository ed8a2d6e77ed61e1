"""A third learning task, in one file and one registration: predict a planet's log10 radius from its
other catalog columns. It exists to prove the plug-in interface (tests/test_tasks.py): nothing else in
the library changes for it. Catalog model only; the target column is removed from the inputs.

    import tests.toy_task  # registers "toy_radius"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from astrobio_lib import tasks
from astrobio_lib.data.build import CATALOG_FEATURES, catalog_features
from astrobio_lib.data.loader import split_by_host
from astrobio_lib.fsutil import atomic_write
from astrobio_lib.tasks import DataInfo, DataNotBuilt, DataReport, Evaluation, TaskData, TaskSpec

NAME = "toy_radius"
TARGET = CATALOG_FEATURES.index("log10_radius")
FOLDER = "toy_radius"


@dataclass
class RadiusHeadConfig:
    n_outputs: int = 1

    def build(self, d_model: int) -> nn.Module:
        return RadiusHead(d_model)

    def synthetic_targets(self, batch_size, generator):
        return {"target": torch.randn(batch_size, generator=generator)}


class RadiusHead(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.head = nn.Linear(d_model, 1)

    def forward(self, fused, encoded, batch):
        pred = self.head(fused).squeeze(-1)
        mse = ((pred - batch["target"]) ** 2).mean()
        return {"pred": pred, "loss_mse": mse, "loss": mse}


class RadiusDataset(torch.utils.data.Dataset):
    def __init__(self, arrays: dict, which: str):
        rows = np.flatnonzero(arrays["split"] == which)
        self.x = torch.from_numpy(arrays["features"][rows].astype(np.float32))
        self.mask = torch.from_numpy(arrays["mask"][rows])
        self.y = torch.from_numpy(arrays["target"][rows].astype(np.float32))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"record": torch.tensor(i), "catalog": self.x[i], "catalog_mask": self.mask[i], "target": self.y[i]}


def collate(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _prepare(cfg, planets, provenance, data_dir, progress=None) -> DataReport:
    raw = catalog_features(planets, np.full(len(planets), np.nan))
    target = raw[:, TARGET]
    keep = np.isfinite(target)
    raw, target, hosts = raw[keep], target[keep], planets["hostname"].to_numpy()[keep]
    if cfg.data.n_planets:
        raw, target, hosts = raw[:cfg.data.n_planets], target[:cfg.data.n_planets], hosts[:cfg.data.n_planets]
    raw[:, TARGET] = np.nan  # the target is not an input
    split = split_by_host(hosts, (0.7, 0.15, 0.15), seed=cfg.run.seed).astype(str)
    train = raw[split == "train"]
    present = np.isfinite(train).any(axis=0)  # the target column (removed) and empty columns: mean 0, std 1
    mean = np.zeros(raw.shape[1])
    std = np.ones(raw.shape[1])
    mean[present] = np.nanmean(train[:, present], axis=0)
    std[present] = np.where(np.nanstd(train[:, present], axis=0) > 0, np.nanstd(train[:, present], axis=0), 1.0)
    mask = np.isfinite(raw)
    folder = Path(data_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"features": np.where(mask, (raw - mean) / std, 0.0), "mask": mask, "target": target, "split": split}
    np.savez(folder / "arrays.npz", **arrays)
    key = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
    atomic_write(folder / "manifest.json", json.dumps({"key": key, "n_planets": int(len(target))}))
    return DataReport("PASS", f"{len(target)} planets, target log10 radius", {"n": len(target)})


def _load(data_dir):
    folder = Path(data_dir) / FOLDER
    if not (folder / "manifest.json").is_file():
        raise DataNotBuilt(f"no toy data in {folder}: prepare it first")
    return json.loads((folder / "manifest.json").read_text()), dict(np.load(folder / "arrays.npz"))


def _info(cfg, data_dir) -> DataInfo:
    manifest, _ = _load(data_dir)
    return DataInfo(manifest["key"], 0, f"{manifest['n_planets']} planets", {"n_planets": cfg.data.n_planets})


def _open(cfg, data_dir) -> TaskData:
    manifest, arrays = _load(data_dir)
    return TaskData(RadiusDataset(arrays, "train"), RadiusDataset(arrays, "val"), collate, key=manifest["key"],
                    built_with={"n_planets": cfg.data.n_planets}, description=f"{manifest['n_planets']} planets")


def _evaluate(cfg, progress=None) -> Evaluation:
    from astrobio_lib.evaluate import load_model
    from astrobio_lib.inference import run_batches

    model, flat, path = load_model(cfg.run.run_dir)
    _, arrays = _load(Path(cfg.run.run_dir) / "data")
    test = RadiusDataset(arrays, "test")
    out, losses = run_batches(model, test, collate, 64, keys=("pred",))
    y = test.y.numpy()
    r2 = 1 - float(((out["pred"] - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return Evaluation("PASS" if r2 > 0 else "WARN", f"R² {r2:.3f} against the test mean", {"r2": r2, "checkpoint": str(path)})


SPEC = tasks.register(TaskSpec(
    name=NAME, title="log10 radius from the other catalog columns (a toy)", modalities=("catalog",),
    model=lambda base: dataclasses.replace(base, modalities=("catalog",), heads=RadiusHeadConfig()),
    loss_keys=("loss_mse",), headline_keys=("loss_mse",), headline_label="radius MSE", data_keys=("n_planets",),
    prepare_data=_prepare, show_data=lambda report: print(report.headline), data_info=_info, open_data=_open,
    evaluate=_evaluate, show_evaluation=lambda evaluation: print(evaluation.headline)))
