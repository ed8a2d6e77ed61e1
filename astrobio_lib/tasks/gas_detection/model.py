"""The gas-detection task's model: the catalog and spectrum encoders only, a detection head and a
posterior over the atmosphere.

Why only those encoders: the noisy spectrum is the observation and the catalog row describes the
planet; CLERO's climate datacube and the metabolic-graph variant are built from the *habitability*
task's assumed CH4 / CO2 / O2, so here they would be a leak or noise, and the text is generated from
the catalog row (it would repeat the catalog token at the cost of an LLM). No LLM is built. The
spectrum encoder is an MLP over every bin with the number of transits beside them
(``spectrum_context``): a band is a weighted sum of bins, and how large a feature is in units of the
noise depends on N.

Heads on the fused class token:

- **detection**: P(present) per gas from the fused class token and the spectrum token (a skip past
  the fusion: the spectrum carries all the information), binary cross-entropy;
- **retrieval posterior**: a conditional normalising flow (neural spline flow, ``zuko``) over the 8
  latent targets — log10 VMR of each gas (for an absent gas, the prior draw that changes no
  spectrum), temperature, log10 surface pressure, log10 cloud top — trained by neural posterior
  estimation: the negative log-likelihood of the simulator's truths under q(θ | spectrum), averaged
  over the 8 dimensions. Real posteriors are skewed, bounded and correlated (abundance - pressure -
  cloud degeneracies); a flow can be, independent Gaussians cannot. Checked by expected coverage
  (:func:`astrobio_lib.tasks.gas_detection.posterior.expected_coverage`). The flow reads the fused
  token *detached*: the encoders learn from detection alone, so the flow's loss — which over-fits the
  few thousand training atmospheres within a few hundred steps when it may shape the encoders
  (measured: validation NLL rising after ~600 steps while detection still improved) — neither
  stops training early nor pulls the shared features toward memorising atmospheres.

Why ``zuko`` and not ``sbi``: the flow is a head of this model, trained by the product's trainer
(checkpoints, resume, DDP / FSDP, precision); ``zuko`` flows are plain ``nn.Module``\\ s conditioned
on a tensor, which is exactly that, with one small dependency. ``sbi`` wraps the same flows (its
density estimators build on ``zuko``) in its own training loop and data handling, which would run
beside ours rather than inside it.

Targets in the batch: ``gas_present`` [B, 5] 0/1, ``gas_targets`` [B, 8] standardised latents.
With ``posterior_samples`` (an int S) in the batch the heads also return ``retrieval_samples``
[B, S, 8], their log densities ``retrieval_samples_log_prob`` [B, S] and the truth's
``retrieval_truth_log_prob`` [B].
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
SPECTRUM_BINS = len(PRISM_EDGES_UM) - 1
LOSS_KEYS = ("loss_gas_detection", "loss_retrieval")
SPECTRUM_LAYERS = 3  # the spectrum MLP: 3 hidden layers of 256 (what beat the baselines in issue 25's study)


FLOW_BINS = 8  # zuko's NSF default: rational-quadratic spline bins per feature
SPLINE_INTERMEDIATES = 15  # floats per feature and bin the spline saves for backward (measured, zuko 1.6)


@dataclass
class GasHeadsConfig:
    n_gases: int = N_GASES
    n_retrieval: int = N_RETRIEVAL
    flow_transforms: int = 3
    """coupling transforms of the neural spline flow"""
    flow_hidden: int = 32
    """width of the two hidden layers of each transform's conditioner"""
    flow_context_dropout: float = 0.3
    """dropout on the fused token the flow reads (training only): the flow over-fits the training
    atmospheres' parameters without it (validation NLL rising after ~600 steps, measured)"""
    flow_shapes_encoder: bool = False
    """let the flow's loss train the shared encoders too (False: the flow reads the fused token
    detached, so the encoders learn from detection alone and the flow cannot over-fit through them)"""

    @property
    def n_outputs(self) -> int:  # the detection logits and one flow parameterisation per transform
        return self.n_gases + self.flow_transforms * (3 * FLOW_BINS - 1) * self.n_retrieval

    def activation_bytes(self, batch_size: int, d_model: int) -> float:
        """Bytes the heads keep for backward (the memory budget), all fp32 (the flow runs outside
        autocast). Detection: its input (fused token and spectrum token) and logits. The flow, per
        transform: the masked weights of its MLP (per step, not per sample: zuko multiplies each
        weight by its mask in every forward) and, per sample, the concatenated input, the hidden
        layers, the spline parameters and the spline's own intermediates. Checked against the
        storages autograd saves for zuko 1.6's NSF with a context that needs gradients (exact per step,
        within 1% per sample, for context widths 64 and 256: tests/test_memory.py); with the detached
        context of the default (``flow_shapes_encoder`` False) the flow keeps 7-17% less per step."""
        t, h, f = self.flow_transforms, self.flow_hidden, self.n_retrieval
        spline = f * (3 * FLOW_BINS - 1)  # widths, heights and derivatives per feature
        per_step = t * ((f + d_model) * h + h * h + h * spline + f * d_model + 7 * f * h)
        per_sample = t * (d_model + f + 4 * h + spline + SPLINE_INTERMEDIATES * f * FLOW_BINS)
        detection = 2 * d_model + self.n_gases
        return 4.0 * (per_step + batch_size * (per_sample + detection))

    def build(self, d_model: int) -> nn.Module:
        return GasHeads(d_model, self)

    def synthetic_targets(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"gas_present": torch.randint(0, 2, (batch_size, self.n_gases), generator=generator).float(),
                "gas_targets": torch.randn(batch_size, self.n_retrieval, generator=generator)}


class GasHeads(nn.Module):
    """``forward(fused, encoded, batch)`` -> ``gas_logits`` [B, gases], ``loss_gas_detection``,
    ``loss_retrieval`` (flow NLL per dimension), ``loss``; posterior samples on request (module
    docstring)."""

    def __init__(self, d_model: int, cfg: GasHeadsConfig):
        super().__init__()
        import zuko

        # detection reads the fused class token and the spectrum's own token (a skip past the fusion)
        self.gas_head = nn.Linear(2 * d_model, cfg.n_gases)
        # passes=2: coupling transforms (sampling costs one pass, not one per dimension). Built on the CPU
        # (its masks are computed with an operator the meta device lacks), then moved where the model is.
        # On the meta device (the memory budget's parameter count) the CPU build must not advance the global
        # RNG: the budget is cached, so it would run only in a process's first trainer and shift its dropout.
        target = torch.get_default_device()
        with torch.random.fork_rng(devices=[], enabled=target.type == "meta"), torch.device("cpu"):
            flow = zuko.flows.NSF(features=cfg.n_retrieval, context=d_model, transforms=cfg.flow_transforms, bins=FLOW_BINS,
                                  hidden_features=(cfg.flow_hidden, cfg.flow_hidden), passes=2)
        self.posterior = flow.to(target)
        self.n_retrieval = cfg.n_retrieval
        self.shapes_encoder = cfg.flow_shapes_encoder
        self.context_dropout = nn.Dropout(cfg.flow_context_dropout)

    def distribution(self, fused: torch.Tensor):
        """q(θ | x) for each fused token (computed in fp32: spline flows are not bf16-safe)."""
        return self.posterior(self.context_dropout(fused if self.shapes_encoder else fused.detach()).float())

    def forward(self, fused: torch.Tensor, encoded: Encoded, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.gas_head(torch.cat([fused, encoded.token("spectrum").to(fused.dtype)], dim=-1))
        detection = F.binary_cross_entropy_with_logits(logits, batch["gas_present"].to(logits.dtype))
        y = batch["gas_targets"].float()
        known = ~torch.isnan(y).any(dim=1)
        with torch.autocast(device_type=fused.device.type, enabled=False):
            q = self.distribution(fused)
            log_prob = q.log_prob(torch.nan_to_num(y))
        retrieval = masked_mean(-log_prob / self.n_retrieval, known)
        out = {"gas_logits": logits, "loss_gas_detection": detection, "loss_retrieval": retrieval,
               "loss": detection + retrieval, "retrieval_truth_log_prob": log_prob}
        samples = batch.get("posterior_samples")
        if samples:
            with torch.autocast(device_type=fused.device.type, enabled=False):
                theta, lp = q.rsample_and_log_prob((int(samples),))
            out["retrieval_samples"] = theta.transpose(0, 1)  # [B, S, D]
            out["retrieval_samples_log_prob"] = lp.transpose(0, 1)
        return out


def model_config(base):
    """The gas-detection model: the preset's catalog encoder and fusion, an MLP spectrum encoder over
    the simulated PRISM bins with the number of transits beside them, these heads."""
    return dataclasses.replace(base, modalities=MODALITIES, heads=GasHeadsConfig(),
                               fusion=dataclasses.replace(base.fusion, spectrum_bins=SPECTRUM_BINS,
                                                          spectrum_encoder="mlp", spectrum_context=1,
                                                          spectrum_layers=SPECTRUM_LAYERS))
