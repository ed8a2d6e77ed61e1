"""Metabolic networks -> PyG graphs, from the genome-scale models that ``cobra`` ships offline
(``textbook`` = e_coli_core: 72 metabolites / 95 reactions; ``iJO1366``; ``salmonella``).

Nodes are metabolites with 64 features: counts of C, H, N, O, P, S and 10 other common elements
(log1p), formula charge, one-hot compartment (c, e, p, m, other), in- and out-degree (log1p),
whether it takes part in an O2-consuming reaction, zero padding to 64. Edges: substrate ->
product for every reaction (both directions for reversible reactions).

Conditioning on the planet's environment: with an anoxic atmosphere (O2 < 1e-3) every reaction
that consumes O2 (``o2_c``, ``o2_e``, ``o2_p``) is removed, and metabolites left without edges are
dropped. So each planet carries one of a few graph *variants* (here: aerobic / anoxic); the
dataset stores each variant once and each planet refers to it by id.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

N_FEATURES = 64
ELEMENTS = ("C", "H", "N", "O", "P", "S", "Fe", "Mg", "Mn", "Co", "Cu", "Zn", "Mo", "Ni", "Na", "K")
COMPARTMENTS = ("c", "e", "p", "m")
ANOXIC_O2 = 1e-3
VARIANTS = ("aerobic", "anoxic")


def load_model(name: str = "textbook"):
    """Returns a cobra model shipped with the package (no download).

    Raises:
        RuntimeError: the model is not shipped (cobra would need the BiGG server).
    """
    from cobra.io import load_model as cobra_load

    try:
        return cobra_load(name)
    except Exception as exc:
        raise RuntimeError(f"metabolic model {name!r} could not be loaded offline ({exc}); use textbook, "
                           f"iJO1366 or salmonella, which cobra ships") from exc


def _consumes_o2(reaction) -> bool:
    return any(m.id.startswith("o2_") and coeff < 0 for m, coeff in reaction.metabolites.items())


def to_graph(model, variant: str = "aerobic") -> Data:
    """Returns the PyG graph of a cobra model for an environment variant.

    Raises:
        ValueError: unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"metabolic variant {variant!r}: one of {VARIANTS}")
    reactions = [r for r in model.reactions if not (variant == "anoxic" and _consumes_o2(r))]
    o2_users = {m.id for r in model.reactions if _consumes_o2(r) for m in r.metabolites}
    edges = set()
    for r in reactions:
        subs = [m.id for m, c in r.metabolites.items() if c < 0]
        prods = [m.id for m, c in r.metabolites.items() if c > 0]
        for s in subs:
            for p in prods:
                edges.add((s, p))
                if r.reversibility:
                    edges.add((p, s))
    used = sorted({m for e in edges for m in e})
    index = {m: i for i, m in enumerate(used)}
    edge_index = torch.tensor([[index[s] for s, _ in sorted(edges)], [index[p] for _, p in sorted(edges)]],
                              dtype=torch.long)
    in_deg = np.bincount(edge_index[1].numpy(), minlength=len(used))
    out_deg = np.bincount(edge_index[0].numpy(), minlength=len(used))
    x = np.zeros((len(used), N_FEATURES), dtype=np.float32)
    for i, mid in enumerate(used):
        met = model.metabolites.get_by_id(mid)
        elements = met.elements or {}
        for j, el in enumerate(ELEMENTS):
            x[i, j] = np.log1p(elements.get(el, 0))
        x[i, 16] = float(met.charge or 0)
        comp = met.compartment if met.compartment in COMPARTMENTS else "other"
        x[i, 17 + (COMPARTMENTS.index(comp) if comp != "other" else 4)] = 1.0
        x[i, 22], x[i, 23] = np.log1p(in_deg[i]), np.log1p(out_deg[i])
        x[i, 24] = float(mid in o2_users)
    return Data(x=torch.from_numpy(x), edge_index=edge_index, num_nodes=len(used))


def variant_for(o2_mixing_ratio: np.ndarray) -> np.ndarray:
    """Returns the variant index (0 aerobic, 1 anoxic) per planet from its O2 mixing ratio."""
    return np.where(np.asarray(o2_mixing_ratio, dtype=float) >= ANOXIC_O2, 0, 1)
