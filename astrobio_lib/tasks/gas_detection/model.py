"""The gas-detection task's model: the catalog and spectrum encoders only, and two heads.

Why only those: the noisy spectrum is the observation and the catalog row describes the planet;
CLERO's climate datacube and the metabolic-graph variant are built from the *habitability* task's
assumed CH4 / CO2 / O2, so here they would be a leak or noise, and the text is generated from the
catalog row (it would repeat the catalog token at the cost of an LLM). No LLM is built.

Heads on the fused class token: P(present) per gas (binary cross-entropy), and a Gaussian (mean,
log variance) per retrieval target — the log10 abundance of each gas present, temperature, log10
surface pressure, log10 cloud top when there is a deck — trained by the negative log-likelihood
``0.5 * (log var + (y - mu)^2 / var)`` over the targets a sample has, so the intervals can be
checked for coverage. Loss = presence BCE + retrieval NLL (both averaged).

Targets in the batch: ``gas_present`` [B, 5] 0/1, ``gas_targets`` [B, 8] standardised (NaN: none).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from astrobio_lib.data.transmission import GASES, PRISM_EDGES_UM
from astrobio_lib.models.fusion import Encoded, masked_mean

MODALITIES = ("catalog", "spectrum")
N_GASES = len(GASES)  # H2O, CO2, CH4, O2, O3
N_RETRIEVAL = N_GASES + 3  # their log10 VMR, temperature, log10 surface pressure, log10 cloud top
LOG_VAR_RANGE = (-9.0, 5.0)  # clamp of the predicted log variance (standardised units)
SPECTRUM_BINS = len(PRISM_EDGES_UM) - 1
LOSS_KEYS = ("loss_gas_detection", "loss_retrieval")


@dataclass
class GasHeadsConfig:
    n_gases: int = N_GASES
    n_retrieval: int = N_RETRIEVAL

    @property
    def n_outputs(self) -> int:
        return self.n_gases + 2 * self.n_retrieval

    def build(self, d_model: int) -> nn.Module:
        return GasHeads(d_model, self)

    def synthetic_targets(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"gas_present": torch.randint(0, 2, (batch_size, self.n_gases), generator=generator).float(),
                "gas_targets": torch.randn(batch_size, self.n_retrieval, generator=generator)}


class GasHeads(nn.Module):
    """``forward(fused, encoded, batch)`` -> ``gas_logits`` [B, gases], ``retrieval_mean`` and
    ``retrieval_log_var`` [B, targets], ``loss_gas_detection``, ``loss_retrieval`` and ``loss``."""

    def __init__(self, d_model: int, cfg: GasHeadsConfig):
        super().__init__()
        self.gas_head = nn.Linear(d_model, cfg.n_gases)
        self.retrieval_head = nn.Linear(d_model, 2 * cfg.n_retrieval)  # mean and log variance per target

    def forward(self, fused: torch.Tensor, encoded: Encoded, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.gas_head(fused)
        mean, log_var = self.retrieval_head(fused).chunk(2, dim=-1)
        log_var = log_var.clamp(*LOG_VAR_RANGE)
        detection = F.binary_cross_entropy_with_logits(logits, batch["gas_present"].to(logits.dtype))
        y = batch["gas_targets"]
        nll = 0.5 * (log_var + (torch.nan_to_num(y) - mean) ** 2 * torch.exp(-log_var))
        retrieval = masked_mean(nll, ~torch.isnan(y))
        return {"gas_logits": logits, "retrieval_mean": mean, "retrieval_log_var": log_var,
                "loss_gas_detection": detection, "loss_retrieval": retrieval, "loss": detection + retrieval}


def model_config(base):
    """The gas-detection model: the preset's catalog and spectrum encoders and fusion, these heads;
    the spectrum encoder sized for the simulated PRISM bins."""
    return dataclasses.replace(base, modalities=MODALITIES, heads=GasHeadsConfig(),
                               fusion=dataclasses.replace(base.fusion, spectrum_bins=SPECTRUM_BINS))
