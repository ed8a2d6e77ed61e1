"""Splits and loading. Splits are by host system: no star appears in two splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

SPLITS = ("train", "val", "test")


def split_by_host(hostnames: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0, positive: Optional[Sequence[float]] = None) -> np.ndarray:
    """Returns a split name ("train" / "val" / "test") per row, grouped by host system.

    Hosts are shuffled with ``seed`` and assigned so that each split receives about
    ``fractions`` of the *planets*. When ``positive`` (e.g. P(habitable)) is given, hosts with any
    positive planet are split separately from the rest, so the rare positives reach every split.

    Raises:
        ValueError: fractions that are negative or do not sum to 1, or a length mismatch.
    """
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != len(SPLITS) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions {fractions.tolist()} must be 3 non-negative numbers "
                         f"summing to 1 (train, val, test)")
    hosts = pd.Series(list(hostnames), dtype="object")
    if hosts.isna().any():
        raise ValueError(f"{int(hosts.isna().sum())} rows have no host name: cannot group by host")
    if positive is not None:
        pos = pd.Series(np.nan_to_num(np.asarray(positive, dtype=float)) > 0)
        if len(pos) != len(hosts):
            raise ValueError(f"positive has {len(pos)} rows, hostnames {len(hosts)}")
        host_is_pos = pos.groupby(hosts.values).any()
    else:
        host_is_pos = pd.Series(False, index=hosts.unique())
    sizes = hosts.value_counts()
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in (True, False):
        stratum_hosts = np.array(sorted(host_is_pos.index[host_is_pos.values == stratum]))
        rng.shuffle(stratum_hosts)
        total = sizes[stratum_hosts].sum() if len(stratum_hosts) else 0
        bounds = np.cumsum(fractions) * total
        seen = 0
        for h in stratum_hosts:
            # the host goes to the split whose planet quota its middle falls into
            mid = seen + sizes[h] / 2
            assignment[h] = SPLITS[min(int(np.searchsorted(bounds, mid, side="right")), 2)]
            seen += sizes[h]
    return hosts.map(assignment).to_numpy()


# --------------------------------------------------------------------------- dataset


class PlanetDataset(torch.utils.data.Dataset):
    """The built dataset of a run (``outputs/<run>/data``), one item per planet of a split.

    Construction validates the folder (:func:`astrobio_lib.data.validate.validate_dataset`) and
    refuses data with fatal findings, naming each one and its fix.

    Raises:
        DataValidationError: fatal findings (missing or corrupt files, NaN/Inf, a wrong-shaped
            cube, duplicates, a host in two splits, dangling graph edges, ...).
        ValueError: an unknown split.
    """

    def __init__(self, data_dir: str | Path, split: Optional[str] = None, validate: bool = True):
        from astrobio_lib.data.validate import validate_dataset

        self.data_dir = Path(data_dir)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split {split!r}: one of {SPLITS} or None")
        if validate:
            validate_dataset(self.data_dir).raise_if_fatal(f"dataset {self.data_dir}")
        self.manifest = json.loads((self.data_dir / "manifest.json").read_text())
        shards = [torch.load(self.data_dir / e["file"], weights_only=True) for e in self.manifest["shards"]]
        cube_offsets = np.cumsum([0] + [s["climate"].shape[0] for s in shards])
        self.tensors: dict[str, torch.Tensor] = {}
        for key in shards[0]:
            if key == "climate":
                continue
            self.tensors[key] = torch.cat([s[key] for s in shards])
        ci = [torch.where(s["climate_index"] >= 0, s["climate_index"] + int(off), -1)
              for s, off in zip(shards, cube_offsets, strict=False)]
        self.tensors["climate_index"] = torch.cat(ci)
        self.cubes = torch.cat([s["climate"] for s in shards]) if cube_offsets[-1] else torch.zeros(0, 2, 10, 32, 64)
        graphs = torch.load(self.data_dir / self.manifest["graphs"]["file"], weights_only=True)
        self.graphs = [(graphs[f"{v}_x"], graphs[f"{v}_edge_index"]) for v in self.manifest["graphs"]["nodes"]]
        splits = np.array([r["split"] for r in self.manifest["records"]])
        records = self.tensors["record"].numpy()
        self.indices = np.flatnonzero(splits[records] == split) if split else np.arange(len(records))
        self.synthetic = bool(self.manifest.get("synthetic"))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.indices[i])
        item = {k: v[j] for k, v in self.tensors.items()}
        c = int(item["climate_index"])
        item["climate"] = self.cubes[c] if c >= 0 else None
        return item

    def name(self, item: dict[str, torch.Tensor]) -> str:
        return self.manifest["records"][int(item["record"])]["pl_name"]


class Collate:
    """Collates planets of :class:`PlanetDataset` into the batch dict of :mod:`astrobio_lib.models.fusion`
    with the targets of the built dataset's labels (PyG ``Batch`` for the graphs of the samples that have one;
    zeros plus ``has_*`` masks elsewhere). Picklable, so it works with worker processes."""

    def __init__(self, graphs: Sequence[tuple[torch.Tensor, torch.Tensor]]):
        self.graphs = list(graphs)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from torch_geometric.data import Batch, Data

        stack = lambda key: torch.stack([it[key] for it in items])  # noqa: E731
        has_climate = torch.tensor([it["climate"] is not None for it in items])
        shape = next((it["climate"].shape for it in items if it["climate"] is not None), (2, 10, 32, 64))
        climate = torch.stack([it["climate"] if it["climate"] is not None else torch.zeros(shape) for it in items])
        graph_data = []
        has_graph = torch.tensor([int(it["graph_id"]) >= 0 for it in items])  # -1: no graph
        for it in items:
            if int(it["graph_id"]) >= 0:
                x, ei = self.graphs[int(it["graph_id"])]
                graph_data.append(Data(x=x, edge_index=ei, num_nodes=x.shape[0]))
        return {
            "record": stack("record"),
            "catalog": stack("catalog"), "catalog_mask": stack("catalog_mask"),
            "climate": climate, "has_climate": has_climate,
            "graph": Batch.from_data_list(graph_data) if graph_data else None, "has_graph": has_graph,
            "spectrum": stack("spectrum"), "has_spectrum": stack("has_spectrum"),
            "text_ids": stack("text_ids"), "text_mask": stack("text_mask"),
            "has_text": stack("text_mask").any(dim=1),
            "p_habitable": stack("p_habitable"), "climate_state": stack("climate_state"),
            "biosignature": stack("biosignature"), "t_eq": stack("t_eq"),
        }


def make_loader(dataset: PlanetDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """Returns a deterministic DataLoader (the shuffle order depends only on ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                       collate_fn=Collate(dataset.graphs), num_workers=num_workers,
                                       drop_last=drop_last, persistent_workers=num_workers > 0)
