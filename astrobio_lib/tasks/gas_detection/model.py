"""The gas-detection task's model: the catalog and spectrum encoders only, a detection head and a
posterior over the atmosphere.

Why only those encoders: the noisy spectrum is the observation and the catalog row describes the
planet; CLERO's climate datacube and the metabolic-graph variant are built from the *habitability*
task's assumed CH4 / CO2 / O2, so here they would be a leak or noise, and the text is generated from
the catalog row (it would repeat the catalog token at the cost of an LLM). No LLM is built. The
spectrum encoder is an MLP over every bin with the number of transits beside them
(``spectrum_context``): a band is a weighted sum of bins, and how large a feature is in units of the
noise depends on N.

Heads:

- **detection**: P(present) per gas from the spectrum token alone, binary cross-entropy. Not from
  the fused class token: the atmospheres are drawn independently of the planet (the catalog-only
  baseline sits at AUROC ~0.5), so the catalog says nothing about which gases are there, and through
  the fusion it only lets the head tell the training host stars apart. Measured on 40 planets x 75
  atmospheres (bright hosts kept, white floor, 1,000 steps): with the fused token the validation BCE
  was best at step 400 and the model beat both spectral baselines in 8 of the 12 CO2 / H2O / O3 cells
  at N = 10 and 30; from the spectrum token alone it was still improving at step 1,000 and beat them
  in 12 of 12;
- **retrieval posterior**: from the fused class token, a conditional normalising flow (neural spline flow, ``zuko``) over the 8
  latent targets — log10 VMR of each gas (for an absent gas, the prior draw that changes no
  spectrum), temperature, log10 surface pressure, log10 cloud top — trained by neural posterior
  estimation: the negative log-likelihood of the simulator's truths under q(θ | spectrum), averaged
  over the 8 dimensions. Real posteriors are skewed, bounded and correlated (abundance - pressure -
  cloud degeneracies); a flow can be, independent Gaussians cannot. Checked by expected coverage
  (:func:`astrobio_lib.tasks.gas_detection.posterior.expected_coverage`). The fusion reads the
  spectrum token *detached* (``fusion_detaches``): the spectrum encoder learns from detection alone,
  and the flow's loss trains the catalog encoder, the fusion and itself. The flow over-fits the few
  thousand training atmospheres within a few hundred steps when it may shape the spectrum encoder
  (measured: validation NLL rising after ~600 steps while detection still improved); this way it
  neither pulls the spectrum features toward memorising atmospheres nor decides when training stops
  (the best checkpoint is the best validation detection BCE). The catalog row may inform the
  retrieval (the depth of a feature scales with the planet's scale height: temperature over gravity),
  not the detection.

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
FUSION_DROPOUT = 0.1  # in the fusion transformer, which only the flow trains (GasHeadsConfig.flow_context_dropout)


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
    flow_context_dropout: float = 0.5
    """dropout on the fused token the flow reads (training only): the flow over-fits the training
    atmospheres' parameters through the catalog and the fusion without it. Measured (40 x 75, bright
    hosts, white floor, 3,000 steps, best detection at step 1,800): with 0.3 and no fusion dropout the
    validation NLL rose from 1.391 (step 1,000) to 1.412 and the expected-coverage error was 0.046; with
    0.5 and fusion dropout :data:`FUSION_DROPOUT` it stayed within 1.391-1.398 and the error was 0.035"""
    flow_shapes_encoder: bool = False
    """let the flow's loss train the spectrum encoder too (False: the fusion reads the spectrum token
    detached, so the spectrum encoder learns from detection alone and the flow cannot over-fit through it)"""

    @property
    def fusion_detaches(self) -> tuple[str, ...]:  # read by the model's fusion (models.fusion.HeadsConfig)
        return () if self.flow_shapes_encoder else ("spectrum",)

    @property
    def n_outputs(self) -> int:  # the detection logits and one flow parameterisation per transform
        return self.n_gases + self.flow_transforms * (3 * FLOW_BINS - 1) * self.n_retrieval

    def activation_bytes(self, batch_size: int, d_model: int) -> float:
        """Bytes the heads keep for backward (the memory budget), all fp32 (the flow runs outside
        autocast). Detection: its input (the spectrum token) and logits. The flow, per
        transform: the masked weights of its MLP (per step, not per sample: zuko multiplies each
        weight by its mask in every forward) and, per sample, the concatenated input, the hidden
        layers, the spline parameters and the spline's own intermediates. Checked against the
        storages autograd saves for zuko 1.6's NSF with a context that needs gradients (exact per step,
        within 1% per sample, for context widths 64 and 256: tests/test_memory.py)."""
        t, h, f = self.flow_transforms, self.flow_hidden, self.n_retrieval
        spline = f * (3 * FLOW_BINS - 1)  # widths, heights and derivatives per feature
        per_step = t * ((f + d_model) * h + h * h + h * spline + f * d_model + 7 * f * h)
        per_sample = t * (d_model + f + 4 * h + spline + SPLINE_INTERMEDIATES * f * FLOW_BINS)
        detection = d_model + self.n_gases
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

        # detection reads the spectrum's own token only (module docstring: the catalog carries no signal)
        self.gas_head = nn.Linear(d_model, cfg.n_gases)
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
        self.context_dropout = nn.Dropout(cfg.flow_context_dropout)

    def distribution(self, fused: torch.Tensor):
        """q(θ | x) for each fused token (computed in fp32: spline flows are not bf16-safe)."""
        return self.posterior(self.context_dropout(fused).float())

    def forward(self, fused: torch.Tensor, encoded: Encoded, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.gas_head(encoded.token("spectrum").to(fused.dtype))
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
                                                          spectrum_layers=SPECTRUM_LAYERS, dropout=FUSION_DROPOUT))
