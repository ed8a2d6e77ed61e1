"""SYNTHETIC batches with the structure of a real multimodal batch, for shape tests and
benchmarks of the models. Random numbers, not data: never use them for science. Every batch
carries ``synthetic=True``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch_geometric.data import Batch, Data

from astrobio_lib.models.fusion import MultimodalConfig


def synthetic_batch(cfg: MultimodalConfig, batch_size: int = 4, seq_len: int = 16, seed: int = 0,
                    missing: Iterable[tuple[int, str]] = (), nodes_per_graph: int = 12) -> dict[str, Any]:
    """Returns a SYNTHETIC batch of the modalities ``cfg`` builds (see :mod:`astrobio_lib.models.fusion`
    for the keys) with the targets of its heads (every target present).

    ``missing`` lists (sample index, modality) pairs to mark absent.

    Raises:
        ValueError: a modality in ``missing`` that the model does not build.
    """
    gen = torch.Generator().manual_seed(seed)
    f, dc = cfg.fusion, cfg.datacube
    absent = {m: torch.zeros(batch_size, dtype=torch.bool) for m in cfg.modalities}
    for i, m in missing:
        if m not in absent:
            raise ValueError(f"modality {m!r} is not built by this model: one of {cfg.modalities}")
        absent[m][i] = True
    catalog_mask = torch.ones(batch_size, f.catalog_features, dtype=torch.bool)
    catalog_mask[absent["catalog"]] = False
    batch: dict[str, Any] = {"synthetic": True, "record": torch.arange(batch_size),
                             "catalog": torch.randn(batch_size, f.catalog_features, generator=gen),
                             "catalog_mask": catalog_mask}
    if cfg.has("climate"):
        batch["climate"] = torch.randn(batch_size, dc.variables, dc.levels, dc.lat, dc.lon, generator=gen)
        batch["has_climate"] = ~absent["climate"]
    if cfg.has("graph"):
        has_graph = ~absent["graph"]
        graphs = []
        for _ in range(int(has_graph.sum())):
            x = torch.randn(nodes_per_graph, cfg.graph.node_features, generator=gen)
            src = torch.randint(0, nodes_per_graph, (3 * nodes_per_graph,), generator=gen)
            dst = torch.randint(0, nodes_per_graph, (3 * nodes_per_graph,), generator=gen)
            graphs.append(Data(x=x, edge_index=torch.stack([src, dst])))
        batch["graph"] = Batch.from_data_list(graphs) if graphs else None
        batch["has_graph"] = has_graph
    if cfg.has("spectrum"):
        batch["spectrum"] = torch.randn(batch_size, f.spectrum_bins, generator=gen)
        batch["has_spectrum"] = ~absent["spectrum"]
        if f.spectrum_context:
            batch["spectrum_context"] = torch.rand(batch_size, f.spectrum_context, generator=gen) * 2 - 1
    if cfg.has("text"):
        text_mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
        text_mask[:, seq_len - 3:] = False  # some padding
        batch["text_ids"] = torch.randint(0, cfg.llm.vocab_size, (batch_size, seq_len), generator=gen)
        batch["text_mask"] = text_mask
        batch["has_text"] = ~absent["text"]
    if cfg.heads is not None:
        batch.update(cfg.heads.synthetic_targets(batch_size, gen))
    return batch
