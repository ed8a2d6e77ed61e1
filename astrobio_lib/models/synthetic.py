"""SYNTHETIC batches with the structure of a real multimodal batch, for shape tests and
benchmarks of the models. Random numbers, not data: never use them for science. Every batch
carries ``synthetic=True``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch_geometric.data import Batch, Data

from astrobio_lib.models.fusion import MODALITIES, N_GASES, N_RETRIEVAL, MultimodalConfig


def synthetic_batch(cfg: MultimodalConfig, batch_size: int = 4, seq_len: int = 16, seed: int = 0,
                    missing: Iterable[tuple[int, str]] = (), nodes_per_graph: int = 12) -> dict[str, Any]:
    """Returns a SYNTHETIC batch (see :mod:`astrobio_lib.models.fusion` for the keys).

    ``missing`` lists (sample index, modality) pairs to mark absent; every target is present.

    Raises:
        ValueError: an unknown modality in ``missing``.
    """
    gen = torch.Generator().manual_seed(seed)
    f, dc = cfg.fusion, cfg.datacube
    absent = {m: torch.zeros(batch_size, dtype=torch.bool) for m in MODALITIES}
    for i, m in missing:
        if m not in absent:
            raise ValueError(f"unknown modality {m!r}: one of {MODALITIES}")
        absent[m][i] = True
    catalog_mask = torch.ones(batch_size, f.catalog_features, dtype=torch.bool)
    catalog_mask[absent["catalog"]] = False
    has_graph = ~absent["graph"]
    graphs = []
    for _ in range(int(has_graph.sum())):
        x = torch.randn(nodes_per_graph, cfg.graph.node_features, generator=gen)
        src = torch.randint(0, nodes_per_graph, (3 * nodes_per_graph,), generator=gen)
        dst = torch.randint(0, nodes_per_graph, (3 * nodes_per_graph,), generator=gen)
        graphs.append(Data(x=x, edge_index=torch.stack([src, dst])))
    text_mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    text_mask[:, seq_len - 3:] = False  # some padding
    return {
        "synthetic": True,
        "catalog": torch.randn(batch_size, f.catalog_features, generator=gen),
        "catalog_mask": catalog_mask,
        "climate": torch.randn(batch_size, dc.variables, dc.levels, dc.lat, dc.lon, generator=gen),
        "has_climate": ~absent["climate"],
        "graph": Batch.from_data_list(graphs) if graphs else None,
        "has_graph": has_graph,
        "spectrum": torch.randn(batch_size, f.spectrum_bins, generator=gen),
        "has_spectrum": ~absent["spectrum"],
        "text_ids": torch.randint(0, cfg.llm.vocab_size, (batch_size, seq_len), generator=gen),
        "text_mask": text_mask,
        "has_text": ~absent["text"],
        "p_habitable": torch.rand(batch_size, generator=gen),
        "climate_state": torch.randint(0, f.n_climate_states, (batch_size,), generator=gen),
        "biosignature": torch.randint(0, 2, (batch_size,), generator=gen).float(),
        "t_eq": torch.randn(batch_size, generator=gen),
        "gas_present": torch.randint(0, 2, (batch_size, N_GASES), generator=gen).float(),
        "gas_targets": torch.randn(batch_size, N_RETRIEVAL, generator=gen),
    }
