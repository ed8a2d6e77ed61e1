"""The habitability task's heads and loss (the seeds' multi-task loss).

Heads on the fused class token: P(habitable) (BCE against the Monte-Carlo soft label), the climate
state (CE over CLERO's six classes), biosignature gases present (BCE), the equilibrium temperature
(physics, MSE in standardised units); and a catalog-only head on the catalog token.

Loss (``loss_weights``, the seeds' values by default): classification 1.0 (habitability BCE +
climate-state CE + biosignature BCE + the catalog-only head's BCE), reconstruction 0.1 (graph VAE edge
+ node + KL), physics 0.2, consistency 0.15 (squared difference between the fused and the
catalog-only habitability probabilities: the fused model must not drift from what the catalog
physics supports without evidence from other modalities), and language 0.1 (next-token loss on the
text; not in the seeds, which gave the LLM no weight). Each component is averaged over the samples
that have its target; a component with no such sample in the batch is 0.

Targets in the batch: ``p_habitable`` [B] (NaN: undetermined), ``climate_state`` [B] (-1: none),
``biosignature`` [B] (NaN: none), ``t_eq`` [B] standardised (NaN: none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from astrobio_lib.models.fusion import Encoded, masked_mean

MODALITIES = ("catalog", "climate", "graph", "spectrum", "text")
SEEDS_LOSS_WEIGHTS = {"classification": 1.0, "reconstruction": 0.1, "physics": 0.2,
                      "consistency": 0.15, "language": 0.1}
N_CLIMATE_STATES = 6  # CLERO's six: snowball ... runaway greenhouse
LOSS_KEYS = ("loss_habitability", "loss_classification", "loss_catalog_only", "loss_climate_state",
             "loss_biosignature", "loss_reconstruction", "loss_physics", "loss_consistency", "loss_language")


@dataclass
class HabitabilityHeadsConfig:
    loss_weights: dict = field(default_factory=lambda: dict(SEEDS_LOSS_WEIGHTS))
    """weight of each loss group (the seeds' five)"""
    n_climate_states: int = N_CLIMATE_STATES

    @property
    def n_outputs(self) -> int:
        return 4 + self.n_climate_states

    def build(self, d_model: int) -> nn.Module:
        return HabitabilityHeads(d_model, self)

    def synthetic_targets(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"p_habitable": torch.rand(batch_size, generator=generator),
                "climate_state": torch.randint(0, self.n_climate_states, (batch_size,), generator=generator),
                "biosignature": torch.randint(0, 2, (batch_size,), generator=generator).float(),
                "t_eq": torch.randn(batch_size, generator=generator)}


class HabitabilityHeads(nn.Module):
    """``forward(fused, encoded, batch)`` -> predictions (``habitability_logit``, ``catalog_only_logit``,
    ``climate_logits``, ``biosignature_logit``, ``t_eq_pred``), every loss component and ``loss``."""

    def __init__(self, d_model: int, cfg: HabitabilityHeadsConfig):
        super().__init__()
        self.cfg = cfg
        self.habitability_head = nn.Linear(d_model, 1)
        self.catalog_only_head = nn.Linear(d_model, 1)
        self.climate_head = nn.Linear(d_model, cfg.n_climate_states)
        self.biosignature_head = nn.Linear(d_model, 1)
        self.physics_head = nn.Linear(d_model, 1)

    def forward(self, fused: torch.Tensor, encoded: Encoded, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {
            "habitability_logit": self.habitability_head(fused).squeeze(-1),
            "catalog_only_logit": self.catalog_only_head(encoded.token("catalog")).squeeze(-1),
            "climate_logits": self.climate_head(fused),
            "biosignature_logit": self.biosignature_head(fused).squeeze(-1),
            "t_eq_pred": self.physics_head(fused).squeeze(-1),
        }
        out.update(self.losses(out, batch, encoded))
        return out

    def losses(self, out: dict[str, torch.Tensor], batch: dict[str, Any], encoded: Encoded) -> dict[str, torch.Tensor]:
        """Returns every loss component and the weighted total ``loss``."""
        zero = out["habitability_logit"].new_zeros(())
        p = batch["p_habitable"]
        has_p = ~torch.isnan(p)
        hab = masked_mean(F.binary_cross_entropy_with_logits(
            out["habitability_logit"], torch.nan_to_num(p), reduction="none"), has_p)
        cs = batch["climate_state"]
        has_cs = cs >= 0
        climate = masked_mean(F.cross_entropy(out["climate_logits"], cs.clamp(min=0), reduction="none"), has_cs)
        bio_t = batch["biosignature"]
        has_bio = ~torch.isnan(bio_t)
        bio = masked_mean(F.binary_cross_entropy_with_logits(
            out["biosignature_logit"], torch.nan_to_num(bio_t), reduction="none"), has_bio)
        t_eq = batch["t_eq"]
        has_t = ~torch.isnan(t_eq)
        physics = masked_mean((out["t_eq_pred"] - torch.nan_to_num(t_eq)) ** 2, has_t)
        has_cat = encoded.present("catalog")
        consistency = masked_mean((torch.sigmoid(out["habitability_logit"])
                                   - torch.sigmoid(out["catalog_only_logit"])) ** 2, has_cat)
        # the catalog-only head is itself trained on the label, so "consistency" compares two
        # estimates of the same quantity rather than pulling towards an untrained head
        catalog_only = masked_mean(F.binary_cross_entropy_with_logits(
            out["catalog_only_logit"], torch.nan_to_num(p), reduction="none"), has_p & has_cat)
        enc = encoded.losses
        recon = sum((enc[k] for k in ("graph_edge", "graph_node", "graph_kl") if k in enc), zero)
        language = enc.get("language", zero)
        w = self.cfg.loss_weights
        classification = hab + climate + bio + catalog_only
        total = (w["classification"] * classification + w["reconstruction"] * recon
                 + w["physics"] * physics + w["consistency"] * consistency + w["language"] * language)
        return {"loss": total, "loss_classification": classification, "loss_habitability": hab,
                "loss_catalog_only": catalog_only, "loss_climate_state": climate,
                "loss_biosignature": bio, "loss_reconstruction": recon, "loss_physics": physics,
                "loss_consistency": consistency, "loss_language": language,
                **{f"loss_{k}": v for k, v in enc.items() if k.startswith("graph_")}}


def model_config(base):
    """The habitability model: every modality of the preset, these heads."""
    import dataclasses

    return dataclasses.replace(base, modalities=MODALITIES, heads=HabitabilityHeadsConfig())
