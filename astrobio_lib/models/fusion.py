"""The multimodal habitability model: per-modality encoders -> tokens -> fusion transformer -> heads.

Batch (a dict; the data layer's collate builds it, every modality optional per planet):

=================  ==========================================  =====================================
key                shape / type                                meaning
=================  ==========================================  =====================================
catalog            float [B, catalog_features]                 standardised catalog features (0 where missing)
catalog_mask       bool  [B, catalog_features]                 True where a feature is present
climate            float [B, variables, levels, lat, lon]      climate datacube (any values where absent)
has_climate        bool  [B]                                   datacube present
graph              torch_geometric Batch or None               graphs of the samples with has_graph, in order
has_graph          bool  [B]                                   metabolic graph present
spectrum           float [B, spectrum_bins]                    transmission spectrum (standardised)
has_spectrum       bool  [B]                                   spectrum present
text_ids           int64 [B, T]                                token ids
text_mask          bool  [B, T]                                True on real tokens
has_text           bool  [B]                                   text present
p_habitable        float [B]                                   soft label target (NaN: undetermined)
climate_state      int64 [B]                                   climate-state class (-1: none)
biosignature       float [B]                                   biosignature gases present 0/1 (NaN: none)
t_eq               float [B]                                   standardised equilibrium temperature (NaN: none)
gas_present        float [B, 5]                                (optional) H2O, CO2, CH4, O2, O3 present 0/1
gas_targets        float [B, 8]                                (optional) standardised retrieval targets
                                                           (NaN: none; :mod:`astrobio_lib.data.gas_dataset`)
=================  ==========================================  =====================================

Missing modalities: an encoder only ever sees the samples that have its modality; the others
get a zero token that the fusion attention masks out, so a missing sample sends no gradient into
that encoder.

Loss (``FusionConfig.loss_weights``, the seeds' values by default): classification 1.0
(habitability BCE on the soft label + climate-state CE + biosignature BCE), reconstruction 0.1
(graph VAE edge + node + KL), physics 0.2 (predicted vs catalog equilibrium temperature, MSE in
standardised units), consistency 0.15 (squared difference between the fused and the catalog-only
habitability probabilities: the fused model must not drift from what the catalog physics
supports without evidence from other modalities), and language 0.1 (next-token loss on the text;
not in the seeds, which gave the LLM no weight). Each component is averaged over the samples
that have its target; a component with no such sample in the batch is 0.

Gas detection and retrieval (issue 14; weight ``gas``, 1.0): binary cross-entropy of each gas's
presence, plus the Gaussian negative log-likelihood ``0.5 * (log var + (y - mu)^2 / var)`` of every
retrieval target the sample has (log10 abundances of the gases present, temperature, surface
pressure, cloud top when there is a deck): the retrieval heads predict a mean *and* a variance, so
their intervals can be checked for coverage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from astrobio_lib.models.datacube import DatacubeConfig, DatacubeEncoder
from astrobio_lib.models.graph_vae import GraphVAE, GraphVAEConfig
from astrobio_lib.models.llm import DecoderLM, LLMConfig, lm_loss

MODALITIES = ("catalog", "climate", "graph", "spectrum", "text")
SEEDS_LOSS_WEIGHTS = {"classification": 1.0, "reconstruction": 0.1, "physics": 0.2,
                      "consistency": 0.15, "language": 0.1}
N_GASES = 5  # H2O, CO2, CH4, O2, O3 (astrobio_lib.data.transmission.GASES)
N_RETRIEVAL = 8  # their log10 VMR, temperature, log10 surface pressure, log10 cloud top
SPECTRUM_POSITIONS = 16  # wavelength positions the spectrum encoder keeps (features are where they are)
LOG_VAR_RANGE = (-9.0, 5.0)  # clamp of the predicted log variance (standardised units)


@dataclass
class FusionConfig:
    d_model: int = 64
    """fusion transformer width"""
    n_layers: int = 2
    """fusion transformer layers"""
    n_heads: int = 4
    """fusion attention heads"""
    catalog_features: int = 16
    """catalog input features"""
    spectrum_bins: int = 64
    """spectrum length"""
    spectrum_channels: int = 16
    """channels of the spectrum 1D CNN"""
    n_climate_states: int = 6
    """climate-state classes (CLERO's six: snowball ... runaway greenhouse)"""
    dropout: float = 0.0
    """dropout in the fusion transformer"""
    loss_weights: dict = field(default_factory=lambda: {**SEEDS_LOSS_WEIGHTS, "gas": 1.0})
    """weight of each loss group (the seeds' five, and gas detection + retrieval)"""


@dataclass
class MultimodalConfig:
    """Everything needed to build a :class:`MultimodalModel`."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    graph: GraphVAEConfig = field(default_factory=GraphVAEConfig)
    datacube: DatacubeConfig = field(default_factory=DatacubeConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)


class CatalogEncoder(nn.Module):
    """MLP over (features, presence mask) -> one token."""

    def __init__(self, n_features: int, d_model: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * n_features, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(features.dtype)
        return self.net(torch.cat([features * m, m], dim=-1))


class SpectrumEncoder(nn.Module):
    """1D CNN over the transmission spectrum -> one token. The pooling keeps
    :data:`SPECTRUM_POSITIONS` positions along the wavelength axis: which gas absorbs is told by
    *where* the feature is, which a global average would throw away."""

    def __init__(self, channels: int, d_model: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.GELU(),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.GELU(),
            nn.AdaptiveAvgPool1d(SPECTRUM_POSITIONS), nn.Flatten(),
            nn.Linear(channels * SPECTRUM_POSITIONS, d_model))

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        return self.net(spectrum.unsqueeze(1))


def _masked_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``present`` rows; 0 when none is present — kept in the autograd
    graph (zero gradients rather than none), so every rank of FSDP reduces the same gradients."""
    if present.any():
        return values[present].mean()
    return (values * 0.0).sum()


class MultimodalModel(nn.Module):
    """``forward(batch)`` returns predictions and losses: ``loss`` (the weighted total) and
    every component (see the module docstring)."""

    def __init__(self, cfg: MultimodalConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.fusion.d_model
        self.catalog_encoder = CatalogEncoder(cfg.fusion.catalog_features, d)
        self.climate_encoder = DatacubeEncoder(cfg.datacube)
        self.climate_proj = nn.Linear(cfg.datacube.d_model, d)
        self.graph_encoder = GraphVAE(cfg.graph)
        self.graph_proj = nn.Linear(cfg.graph.latent, d)
        self.spectrum_encoder = SpectrumEncoder(cfg.fusion.spectrum_channels, d)
        self.text_encoder = DecoderLM(cfg.llm)
        self.text_proj = nn.Linear(cfg.llm.hidden, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.modality_embed = nn.Parameter(torch.zeros(1, 1 + len(MODALITIES), d))
        self.fusion = nn.ModuleList(
            nn.TransformerEncoderLayer(d, cfg.fusion.n_heads, 4 * d, dropout=cfg.fusion.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.fusion.n_layers))
        self.norm = nn.LayerNorm(d)
        self.habitability_head = nn.Linear(d, 1)
        self.catalog_only_head = nn.Linear(d, 1)
        self.climate_head = nn.Linear(d, cfg.fusion.n_climate_states)
        self.biosignature_head = nn.Linear(d, 1)
        self.physics_head = nn.Linear(d, 1)
        self.gas_head = nn.Linear(d, N_GASES)
        self.retrieval_head = nn.Linear(d, 2 * N_RETRIEVAL)  # mean and log variance per target
        # FSDP needs every rank to run every sharded module; when set, an absent modality's encoder
        # still runs on one stand-in sample whose output enters the loss multiplied by zero.
        self.run_all_encoders = False

    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (tokens [B, 1 + 5, d], key-padding mask [B, 6] True=missing, encoder losses)."""
        catalog = batch["catalog"]
        bsz, d = catalog.shape[0], self.cfg.fusion.d_model
        tokens = catalog.new_zeros(bsz, 1 + len(MODALITIES), d)
        missing = torch.ones(bsz, 1 + len(MODALITIES), dtype=torch.bool, device=catalog.device)
        missing[:, 0] = False  # the class token
        losses: dict[str, torch.Tensor] = {}

        keepalive = catalog.new_zeros(())  # zero-valued, keeps stand-in encoder runs in the graph
        stand_in = torch.zeros(bsz, dtype=torch.bool, device=catalog.device)
        stand_in[0] = True

        has_catalog = batch["catalog_mask"].any(dim=1)
        if has_catalog.any():
            catalog_token = self.catalog_encoder(catalog[has_catalog], batch["catalog_mask"][has_catalog])
            tokens = self._place(tokens, 1, has_catalog, catalog_token)
        elif self.run_all_encoders:
            keepalive = keepalive + 0.0 * self.catalog_encoder(catalog[stand_in], batch["catalog_mask"][stand_in]).sum()
        missing[:, 1] = ~has_catalog

        has = batch["has_climate"]
        if has.any():
            pooled, _ = self.climate_encoder(batch["climate"][has])
            tokens = self._place(tokens, 2, has, self.climate_proj(pooled))
        elif self.run_all_encoders:
            pooled, _ = self.climate_encoder(batch["climate"][stand_in])
            keepalive = keepalive + 0.0 * self.climate_proj(pooled).sum()
        missing[:, 2] = ~has

        has = batch["has_graph"]
        graph = batch.get("graph")
        if not has.any() and self.run_all_encoders:
            from torch_geometric.data import Batch, Data

            nf = self.cfg.graph.node_features
            dummy = Batch.from_data_list([Data(x=catalog.new_zeros(2, nf),
                                               edge_index=torch.tensor([[0, 1], [1, 0]], device=catalog.device))])
            emb, dummy_losses = self.graph_encoder(dummy.x, dummy.edge_index, dummy.batch, 1)
            keepalive = keepalive + 0.0 * (self.graph_proj(emb).sum() + sum(dummy_losses.values()))
        if has.any():
            if graph is None or graph.num_graphs != int(has.sum()):
                raise ValueError(f"batch['graph'] holds {0 if graph is None else graph.num_graphs} "
                                 f"graphs but has_graph marks {int(has.sum())} samples")
            emb, graph_losses = self.graph_encoder(graph.x, graph.edge_index, graph.batch, graph.num_graphs)
            tokens = self._place(tokens, 3, has, self.graph_proj(emb))
            losses.update({f"graph_{k}": v for k, v in graph_losses.items()})
        missing[:, 3] = ~has

        has = batch["has_spectrum"]
        if has.any():
            tokens = self._place(tokens, 4, has, self.spectrum_encoder(batch["spectrum"][has]))
        elif self.run_all_encoders:
            keepalive = keepalive + 0.0 * self.spectrum_encoder(batch["spectrum"][stand_in]).sum()
        missing[:, 4] = ~has

        has = batch["has_text"]
        if not has.any() and self.run_all_encoders:
            logits, hidden = self.text_encoder(batch["text_ids"][stand_in])
            keepalive = keepalive + 0.0 * (self.text_proj(hidden.mean(1)).sum() + logits.sum())
        if has.any():
            ids, mask = batch["text_ids"][has], batch["text_mask"][has]
            logits, hidden = self.text_encoder(ids)
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            tokens = self._place(tokens, 5, has, self.text_proj(pooled))
            losses["language"] = lm_loss(logits, ids, mask)
        missing[:, 5] = ~has
        if self.run_all_encoders:
            losses["keepalive"] = keepalive

        tokens = tokens + self.modality_embed
        tokens[:, 0] = tokens[:, 0] + self.cls[:, 0]
        return tokens, missing, losses

    @staticmethod
    def _place(tokens: torch.Tensor, slot: int, present: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Returns ``tokens`` with ``values`` written at ``slot`` for the ``present`` samples
        (out of place, so autograd tracks only those rows)."""
        column = tokens.new_zeros(tokens.shape[0], tokens.shape[2])
        column = column.index_put((present.nonzero(as_tuple=True)[0],), values.to(tokens.dtype))
        tokens = tokens.clone()
        tokens[:, slot] = column
        return tokens

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tokens, missing, enc_losses = self.encode(batch)
        x = tokens
        for layer in self.fusion:
            x = layer(x, src_key_padding_mask=missing)
        fused = self.norm(x[:, 0])
        out = {
            "habitability_logit": self.habitability_head(fused).squeeze(-1),
            "catalog_only_logit": self.catalog_only_head(tokens[:, 1]).squeeze(-1),
            "climate_logits": self.climate_head(fused),
            "biosignature_logit": self.biosignature_head(fused).squeeze(-1),
            "t_eq_pred": self.physics_head(fused).squeeze(-1),
            "gas_logits": self.gas_head(fused),
        }
        mean, log_var = self.retrieval_head(fused).chunk(2, dim=-1)
        out["retrieval_mean"], out["retrieval_log_var"] = mean, log_var.clamp(*LOG_VAR_RANGE)
        out.update(self.losses(out, batch, enc_losses, missing))
        return out

    def losses(self, out: dict[str, torch.Tensor], batch: dict[str, Any],
               enc_losses: dict[str, torch.Tensor], missing: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns every loss component and the weighted total ``loss``."""
        zero = out["habitability_logit"].new_zeros(())
        p = batch["p_habitable"]
        has_p = ~torch.isnan(p)
        hab = _masked_mean(F.binary_cross_entropy_with_logits(
            out["habitability_logit"], torch.nan_to_num(p), reduction="none"), has_p)
        cs = batch["climate_state"]
        has_cs = cs >= 0
        climate = _masked_mean(F.cross_entropy(out["climate_logits"], cs.clamp(min=0), reduction="none"), has_cs)
        bio_t = batch["biosignature"]
        has_bio = ~torch.isnan(bio_t)
        bio = _masked_mean(F.binary_cross_entropy_with_logits(
            out["biosignature_logit"], torch.nan_to_num(bio_t), reduction="none"), has_bio)
        t_eq = batch["t_eq"]
        has_t = ~torch.isnan(t_eq)
        physics = _masked_mean((out["t_eq_pred"] - torch.nan_to_num(t_eq)) ** 2, has_t)
        has_cat = ~missing[:, 1]
        consistency = _masked_mean((torch.sigmoid(out["habitability_logit"])
                                    - torch.sigmoid(out["catalog_only_logit"])) ** 2, has_cat)
        # the catalog-only head is itself trained on the label, so "consistency" compares two
        # estimates of the same quantity rather than pulling towards an untrained head
        catalog_only = _masked_mean(F.binary_cross_entropy_with_logits(
            out["catalog_only_logit"], torch.nan_to_num(p), reduction="none"), has_p & has_cat)
        recon = sum((enc_losses[k] for k in ("graph_edge", "graph_node", "graph_kl") if k in enc_losses), zero)
        language = enc_losses.get("language", zero)
        keepalive = enc_losses.get("keepalive", zero)  # exactly zero: stand-in encoder runs under FSDP
        gas_detection, retrieval = self.gas_losses(out, batch)
        w = self.cfg.fusion.loss_weights
        classification = hab + climate + bio + catalog_only
        total = (w["classification"] * classification + w["reconstruction"] * recon
                 + w["physics"] * physics + w["consistency"] * consistency + w["language"] * language
                 + w["gas"] * (gas_detection + retrieval) + keepalive)
        return {"loss": total, "loss_classification": classification, "loss_habitability": hab,
                "loss_catalog_only": catalog_only, "loss_climate_state": climate,
                "loss_biosignature": bio, "loss_reconstruction": recon, "loss_physics": physics,
                "loss_consistency": consistency, "loss_language": language,
                "loss_gas_detection": gas_detection, "loss_retrieval": retrieval,
                **{f"loss_{k}": v for k, v in enc_losses.items() if k.startswith("graph_")}}


    @staticmethod
    def gas_losses(out: dict[str, torch.Tensor], batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(presence BCE averaged over the samples with gas labels, Gaussian NLL averaged over every
        retrieval target present); both zero — in the graph — for a batch without gas labels."""
        logits, mean, log_var = out["gas_logits"], out["retrieval_mean"], out["retrieval_log_var"]
        if "gas_present" not in batch:
            return (logits * 0.0).sum(), (mean * 0.0).sum() + (log_var * 0.0).sum()
        present = batch["gas_present"].to(logits.dtype)
        detection = F.binary_cross_entropy_with_logits(logits, present)  # every sample has all five labels
        y = batch["gas_targets"]
        has = ~torch.isnan(y)
        nll = 0.5 * (log_var + (torch.nan_to_num(y) - mean) ** 2 * torch.exp(-log_var))
        return detection, _masked_mean(nll, has)


def init_weights(model: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """Initialises every weight deterministically from ``seed``: normal(0, std) for linear,
    embedding and convolution weights (GPT-2 / Llama practice), zeros for biases, ones for norm
    scales, normal(0, std) for the learned tokens. Returns ``model``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.is_meta:
                continue
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def build_model(cfg: MultimodalConfig, seed: int = 0, device: Optional[torch.device | str] = None) -> MultimodalModel:
    """Returns a :class:`MultimodalModel` initialised from ``seed`` (on ``device``; ``"meta"``
    builds it without allocating weights)."""
    with torch.device(device or "cpu"):
        model = MultimodalModel(cfg)
    if str(device) != "meta":
        init_weights(model, seed)
    return model
