"""The multimodal model: the encoders a task needs -> tokens -> fusion transformer -> the task's heads.

Which encoders exist is :attr:`MultimodalConfig.modalities` (a learning task chooses them:
:mod:`astrobio_lib.tasks`); only those are built, budgeted and compiled. What is predicted, and the
loss, belong to the task too: :attr:`MultimodalConfig.heads` is the task's heads configuration
(:class:`HeadsConfig`), whose module receives the fused class token and the encoded tokens and
returns the predictions, the loss components and the weighted total ``loss``.

Batch (a dict the task's collate builds; each modality optional per sample, targets the task's own):

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
spectrum_context   float [B, spectrum_context]                 values beside the spectrum (only when configured)
text_ids           int64 [B, T]                                token ids
text_mask          bool  [B, T]                                True on real tokens
has_text           bool  [B]                                   text present
=================  ==========================================  =====================================

Only the keys of the built modalities are read. Missing modalities: an encoder only ever sees the
samples that have its modality; the others get a zero token that the fusion attention masks out, so
a missing sample sends no gradient into that encoder. Encoders with a loss of their own report it
(``graph_edge``, ``graph_node``, ``graph_kl`` from the graph VAE, ``language`` from the LLM); the
heads decide whether and how it enters the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Protocol

import torch
from torch import nn

from astrobio_lib.models.datacube import DatacubeConfig, DatacubeEncoder
from astrobio_lib.models.graph_vae import GraphVAE, GraphVAEConfig
from astrobio_lib.models.llm import DecoderLM, LLMConfig, lm_loss

MODALITIES = ("catalog", "climate", "graph", "spectrum", "text")
# the memory budget's name for the parameters of each large encoder (the rest: "fusion_and_heads")
ENCODER_COMPONENTS = {"text_encoder": "llm", "graph_encoder": "graph_vae", "climate_encoder": "datacube_cnn"}
COMPONENT_MODALITY = {"llm": "text", "graph_vae": "graph", "datacube_cnn": "climate"}
SPECTRUM_POSITIONS = 16  # wavelength positions the spectrum encoder keeps (features are where they are)


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
    spectrum_encoder: str = "cnn"
    """cnn (1D CNN keeping 16 wavelength positions) | mlp (an MLP over every bin)"""
    spectrum_hidden: int = 256
    """width of the spectrum MLP's two hidden layers"""
    spectrum_context: int = 0
    """per-spectrum context values given to the spectrum encoder beside the bins (batch key
    ``spectrum_context``; e.g. the number of transits)"""
    spectrum_dropout: float = 0.0
    """dropout after each hidden layer of the spectrum MLP"""
    spectrum_layers: int = 2
    """hidden layers of the spectrum MLP"""
    dropout: float = 0.0
    """dropout in the fusion transformer"""


class HeadsConfig(Protocol):
    """What a task's heads configuration provides (see :mod:`astrobio_lib.tasks`)."""

    n_outputs: int
    """numbers the heads predict per sample (for the memory budget: the heads' saved activations are
    taken as ``batch x (d_model + n_outputs)`` floats unless the configuration also defines
    ``activation_bytes(batch_size, d_model) -> float``, which then replaces that term)"""

    def build(self, d_model: int) -> nn.Module:
        """The heads module: ``forward(fused [B, d], encoded: Encoded, batch) -> dict`` with the
        predictions, ``loss_*`` components and the weighted total ``loss``."""

    def synthetic_targets(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """SYNTHETIC targets of the heads' keys, for shape tests and benchmarks."""

    # Optional: ``fusion_detaches: tuple[str, ...]`` — modalities whose tokens the fusion reads detached
    # (their encoders then learn only from heads that read their own token, not from the fused token).


@dataclass
class MultimodalConfig:
    """Everything needed to build a :class:`MultimodalModel`: the encoders' sizes (a preset), which of
    them the task uses, and the task's heads (None: encoders and fusion only, e.g. to count parameters)."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    graph: GraphVAEConfig = field(default_factory=GraphVAEConfig)
    datacube: DatacubeConfig = field(default_factory=DatacubeConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    modalities: tuple[str, ...] = MODALITIES
    heads: Optional[Any] = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or "catalog" not in self.modalities:
            raise ValueError(f"MultimodalConfig.modalities {self.modalities}: a subset of {MODALITIES} that holds "
                             f"'catalog' (every sample has its catalog row)")
        self.modalities = tuple(m for m in MODALITIES if m in self.modalities)  # canonical order

    def has(self, modality: str) -> bool:
        return modality in self.modalities


class Encoded(NamedTuple):
    """What the encoders produced for a batch: the tokens (class token first, then one per built
    modality), the key-padding mask (True = missing) and the encoders' own losses."""

    tokens: torch.Tensor  # [B, 1 + modalities, d]
    missing: torch.Tensor  # [B, 1 + modalities] bool
    losses: dict[str, torch.Tensor]
    slots: dict[str, int]  # modality -> its token's index

    def token(self, modality: str) -> torch.Tensor:
        return self.tokens[:, self.slots[modality]]

    def present(self, modality: str) -> torch.Tensor:
        return ~self.missing[:, self.slots[modality]]


class CatalogEncoder(nn.Module):
    """MLP over (features, presence mask) -> one token."""

    def __init__(self, n_features: int, d_model: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * n_features, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(features.dtype)
        return self.net(torch.cat([features * m, m], dim=-1))


class SpectrumEncoder(nn.Module):
    """Transmission spectrum (and ``context`` values, e.g. the number of transits) -> one token.

    - ``cnn``: a 1D CNN whose pooling keeps :data:`SPECTRUM_POSITIONS` positions along the wavelength
      axis (which gas absorbs is told by *where* the feature is, which a global average would throw
      away); the context joins before the last linear layer.
    - ``mlp``: ``spectrum_layers`` hidden layers of ``spectrum_hidden`` over every bin and the context —
      a band is a weighted sum of bins, which the first layer can learn for every gas at once.
    """

    def __init__(self, cfg: FusionConfig, d_model: int):
        super().__init__()
        self.kind, bins, ctx = cfg.spectrum_encoder, cfg.spectrum_bins, cfg.spectrum_context
        if self.kind == "mlp":
            h, p = cfg.spectrum_hidden, cfg.spectrum_dropout
            layers: list[nn.Module] = []
            for k in range(cfg.spectrum_layers):
                layers += [nn.Linear(bins + ctx if k == 0 else h, h), nn.GELU()] + ([nn.Dropout(p)] if p else [])
            self.net = nn.Sequential(*layers, nn.Linear(h, d_model))
        elif self.kind == "cnn":
            c = cfg.spectrum_channels
            self.net = nn.Sequential(
                nn.Conv1d(1, c, 5, padding=2), nn.GELU(),
                nn.Conv1d(c, c, 5, stride=2, padding=2), nn.GELU(),
                nn.AdaptiveAvgPool1d(SPECTRUM_POSITIONS), nn.Flatten())
            self.out = nn.Linear(c * SPECTRUM_POSITIONS + ctx, d_model)
        else:
            raise ValueError(f"FusionConfig.spectrum_encoder {self.kind!r}: cnn | mlp")

    def forward(self, spectrum: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.kind == "mlp":
            return self.net(spectrum if context is None else torch.cat([spectrum, context.to(spectrum.dtype)], -1))
        h = self.net(spectrum.unsqueeze(1))
        return self.out(h if context is None else torch.cat([h, context.to(h.dtype)], -1))


def masked_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``present`` rows; 0 when none is present — kept in the autograd
    graph (zero gradients rather than none), so every rank of FSDP reduces the same gradients."""
    if present.any():
        return values[present].mean()
    return (values * 0.0).sum()


class MultimodalModel(nn.Module):
    """``forward(batch)`` returns the heads' predictions and losses: ``loss`` (the weighted total)
    and every component (see the task's heads)."""

    def __init__(self, cfg: MultimodalConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.fusion.d_model
        self.slots = {m: 1 + i for i, m in enumerate(cfg.modalities)}
        self.catalog_encoder = CatalogEncoder(cfg.fusion.catalog_features, d)
        if cfg.has("climate"):
            self.climate_encoder = DatacubeEncoder(cfg.datacube)
            self.climate_proj = nn.Linear(cfg.datacube.d_model, d)
        if cfg.has("graph"):
            self.graph_encoder = GraphVAE(cfg.graph)
            self.graph_proj = nn.Linear(cfg.graph.latent, d)
        if cfg.has("spectrum"):
            self.spectrum_encoder = SpectrumEncoder(cfg.fusion, d)
        if cfg.has("text"):
            self.text_encoder = DecoderLM(cfg.llm)
            self.text_proj = nn.Linear(cfg.llm.hidden, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.modality_embed = nn.Parameter(torch.zeros(1, 1 + len(cfg.modalities), d))
        self.fusion = nn.ModuleList(
            nn.TransformerEncoderLayer(d, cfg.fusion.n_heads, 4 * d, dropout=cfg.fusion.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.fusion.n_layers))
        self.norm = nn.LayerNorm(d)
        self.heads = cfg.heads.build(d) if cfg.heads is not None else None
        # the token slots the fusion reads detached (HeadsConfig's optional ``fusion_detaches``)
        self.fusion_detached = [self.slots[m] for m in getattr(cfg.heads, "fusion_detaches", ()) if m in self.slots]
        # FSDP needs every rank to run every sharded module; when set, an absent modality's encoder
        # still runs on one stand-in sample whose output enters the loss multiplied by zero.
        self.run_all_encoders = False

    def shard_units(self) -> list[nn.Module]:
        """The repeated blocks FSDP2 shards one by one (each all-gathered on its own)."""
        units: list[nn.Module] = []
        if self.cfg.has("text"):
            units += list(self.text_encoder.blocks)
        if self.cfg.has("climate"):
            units += list(self.climate_encoder.stages) + list(self.climate_encoder.layers)
        if self.cfg.has("graph"):
            units += list(self.graph_encoder.vgae.encoder.layers)
        return units + list(self.fusion)

    def encode(self, batch: dict[str, Any]) -> Encoded:
        """Returns the tokens of the built modalities, the key-padding mask and the encoders' losses."""
        catalog = batch["catalog"]
        bsz, d = catalog.shape[0], self.cfg.fusion.d_model
        n_tok = 1 + len(self.cfg.modalities)
        tokens = catalog.new_zeros(bsz, n_tok, d)
        missing = torch.ones(bsz, n_tok, dtype=torch.bool, device=catalog.device)
        missing[:, 0] = False  # the class token
        losses: dict[str, torch.Tensor] = {}

        keepalive = catalog.new_zeros(())  # zero-valued, keeps stand-in encoder runs in the graph
        stand_in = torch.zeros(bsz, dtype=torch.bool, device=catalog.device)
        stand_in[0] = True

        has = batch["catalog_mask"].any(dim=1)
        if has.any():
            tokens = self._place(tokens, self.slots["catalog"], has,
                                 self.catalog_encoder(catalog[has], batch["catalog_mask"][has]))
        elif self.run_all_encoders:
            keepalive = keepalive + 0.0 * self.catalog_encoder(catalog[stand_in], batch["catalog_mask"][stand_in]).sum()
        missing[:, self.slots["catalog"]] = ~has

        if self.cfg.has("climate"):
            has = batch["has_climate"]
            if has.any():
                pooled, _ = self.climate_encoder(batch["climate"][has])
                tokens = self._place(tokens, self.slots["climate"], has, self.climate_proj(pooled))
            elif self.run_all_encoders:
                pooled, _ = self.climate_encoder(batch["climate"][stand_in])
                keepalive = keepalive + 0.0 * self.climate_proj(pooled).sum()
            missing[:, self.slots["climate"]] = ~has

        if self.cfg.has("graph"):
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
                tokens = self._place(tokens, self.slots["graph"], has, self.graph_proj(emb))
                losses.update({f"graph_{k}": v for k, v in graph_losses.items()})
            missing[:, self.slots["graph"]] = ~has

        if self.cfg.has("spectrum"):
            has = batch["has_spectrum"]
            ctx = batch.get("spectrum_context") if self.cfg.fusion.spectrum_context else None
            if ctx is None and self.cfg.fusion.spectrum_context:
                raise ValueError(f"the spectrum encoder takes {self.cfg.fusion.spectrum_context} context values "
                                 f"per spectrum: the batch has no 'spectrum_context'")
            if has.any():
                tokens = self._place(tokens, self.slots["spectrum"], has,
                                     self.spectrum_encoder(batch["spectrum"][has], None if ctx is None else ctx[has]))
            elif self.run_all_encoders:
                keepalive = keepalive + 0.0 * self.spectrum_encoder(
                    batch["spectrum"][stand_in], None if ctx is None else ctx[stand_in]).sum()
            missing[:, self.slots["spectrum"]] = ~has

        if self.cfg.has("text"):
            has = batch["has_text"]
            if not has.any() and self.run_all_encoders:
                logits, hidden = self.text_encoder(batch["text_ids"][stand_in])
                keepalive = keepalive + 0.0 * (self.text_proj(hidden.mean(1)).sum() + logits.sum())
            if has.any():
                ids, mask = batch["text_ids"][has], batch["text_mask"][has]
                logits, hidden = self.text_encoder(ids)
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                tokens = self._place(tokens, self.slots["text"], has, self.text_proj(pooled))
                losses["language"] = lm_loss(logits, ids, mask)
            missing[:, self.slots["text"]] = ~has
        if self.run_all_encoders:
            losses["keepalive"] = keepalive

        tokens = tokens + self.modality_embed
        tokens[:, 0] = tokens[:, 0] + self.cls[:, 0]
        return Encoded(tokens, missing, losses, self.slots)

    @staticmethod
    def _place(tokens: torch.Tensor, slot: int, present: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Returns ``tokens`` with ``values`` written at ``slot`` for the ``present`` samples
        (out of place, so autograd tracks only those rows)."""
        column = tokens.new_zeros(tokens.shape[0], tokens.shape[2])
        column = column.index_put((present.nonzero(as_tuple=True)[0],), values.to(tokens.dtype))
        tokens = tokens.clone()
        tokens[:, slot] = column
        return tokens

    def fuse(self, encoded: Encoded) -> torch.Tensor:
        """The fused class token [B, d] after the fusion transformer (reading the tokens of the heads'
        ``fusion_detaches`` modalities detached)."""
        x = encoded.tokens
        if self.fusion_detached:
            x = x.clone()
            x[:, self.fusion_detached] = x[:, self.fusion_detached].detach()
        for layer in self.fusion:
            x = layer(x, src_key_padding_mask=encoded.missing)
        return self.norm(x[:, 0])

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.heads is None:
            raise RuntimeError("this model was built without heads (MultimodalConfig.heads is None): build it "
                               "for a task (astrobio_lib.tasks.model_config)")
        encoded = self.encode(batch)
        out = self.heads(self.fuse(encoded), encoded, batch)
        if "keepalive" in encoded.losses:  # exactly zero: stand-in encoder runs under FSDP
            out["loss"] = out["loss"] + encoded.losses["keepalive"]
        return out


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
