"""Variational graph autoencoder for metabolic networks (PyG).

Encoder: ``n_layers`` GATv2 layers (Brody et al. 2022; ``heads`` attention heads, concatenated)
then two GATv2 heads giving mu and log-sigma of a per-node latent (Kipf & Welling 2016, VGAE).
Decoder: PyG's inner-product edge decoder with negative sampling, plus an MLP that reconstructs
the node features. Loss: edge BCE + node-feature MSE + KL / num_nodes.

Shapes: node features ``x`` [nodes, node_features], ``edge_index`` [2, edges], ``batch`` [nodes]
-> per-node latent [nodes, latent] and a per-graph embedding [graphs, latent] (mean pool of mu).

The seeds' "biochemical constraints" are not a loss term here. A real constraint (element and
charge balance of reconstructed reactions) needs the stoichiometric matrix: reaction nodes (or
hyperedges) with signed coefficients, and each metabolite's formula. Our graphs keep
substrate -> product edges per reaction, which lose the coefficients, so a balance over
reconstructed edges would be ill-defined. Adding reaction nodes with stoichiometric edge weights
to the graph builder would make it computable: sum_i S_ij * elements_i = 0 for each reaction j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import VGAE, GATv2Conv, global_mean_pool


@dataclass
class GraphVAEConfig:
    node_features: int = 64
    """input features per metabolite node"""
    hidden: int = 16
    """channels per attention head in the hidden GATv2 layers"""
    heads: int = 2
    """attention heads (concatenated)"""
    n_layers: int = 2
    """hidden GATv2 layers before the mu / log-sigma heads"""
    latent: int = 16
    """latent channels per node"""
    dropout: float = 0.0
    """attention dropout"""


class GATv2Encoder(nn.Module):
    def __init__(self, cfg: GraphVAEConfig):
        super().__init__()
        width = cfg.hidden * cfg.heads
        self.layers = nn.ModuleList(
            GATv2Conv(cfg.node_features if i == 0 else width, cfg.hidden, heads=cfg.heads,
                      dropout=cfg.dropout)
            for i in range(cfg.n_layers))
        self.mu = GATv2Conv(width, cfg.latent, heads=1)
        self.logstd = GATv2Conv(width, cfg.latent, heads=1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            x = F.elu(layer(x, edge_index))
        # clamp as PyG's VGAE does (MAX_LOGSTD = 10) so exp() cannot overflow
        return self.mu(x, edge_index), self.logstd(x, edge_index).clamp(max=10)


class GraphVAE(nn.Module):
    """Graph VAE; :meth:`forward` returns the per-graph embedding and the loss components."""

    def __init__(self, cfg: GraphVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.vgae = VGAE(GATv2Encoder(cfg))
        self.node_decoder = nn.Sequential(nn.Linear(cfg.latent, cfg.hidden * cfg.heads), nn.ELU(),
                                          nn.Linear(cfg.hidden * cfg.heads, cfg.node_features))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor,
                num_graphs: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (graph embedding [num_graphs, latent], {edge, node, kl} losses)."""
        z = self.vgae.encode(x, edge_index)  # reparameterised in training, mu in eval
        mu = self.vgae.__mu__
        losses = {
            # positive edges vs an equal number of sampled negative edges
            "edge": self.vgae.recon_loss(z, edge_index),
            "node": F.mse_loss(self.node_decoder(z), x),
            "kl": self.vgae.kl_loss() / max(x.shape[0], 1),
        }
        return global_mean_pool(mu, batch, size=num_graphs), losses

    @torch.no_grad()
    def edge_auc(self, x: torch.Tensor, edge_index: torch.Tensor) -> float:
        """Returns the ROC AUC of reconstructing ``edge_index`` against as many sampled
        non-edges (PyG ``VGAE.test``)."""
        from torch_geometric.utils import negative_sampling

        z = self.vgae.encode(x, edge_index)
        neg = negative_sampling(edge_index, num_nodes=x.shape[0])
        auc, _ = self.vgae.test(z, edge_index, neg)
        return float(auc)
