"""Plots of the gas-detection task's reports (notebooks 01 and 04). Each function draws on a given
matplotlib Axes and returns it."""

from __future__ import annotations

import numpy as np
import pandas as pd


def gas_features(ax, wavelength_um, base, with_gas: dict, title: str = ""):
    """Transit depth (ppm) of an N2 atmosphere without and with each gas (SIMULATED, TauREx)."""
    ax.plot(wavelength_um, 1e6 * np.asarray(base), color="black", lw=1.5, label="N2 only (Rayleigh)")
    for gas, depth in with_gas.items():
        ax.plot(wavelength_um, 1e6 * np.asarray(depth), lw=1.0, label=f"+ {gas}")
    _depth_axes(ax, title, ncol=2)
    return ax


def noise_levels(ax, wavelength_um, depth, noisy: dict, title: str = ""):
    """One noiseless spectrum and a noisy draw at each number of transits (ppm)."""
    for n, (draw, sigma) in noisy.items():
        ax.errorbar(wavelength_um, 1e6 * draw, yerr=1e6 * sigma, fmt=".", ms=3, lw=0.6, alpha=0.7,
                    label=f"{n} transit{'s' if n > 1 else ''} (median σ {1e6 * np.median(sigma):.0f} ppm)")
    ax.plot(wavelength_um, 1e6 * np.asarray(depth), color="black", lw=1.5, label="noiseless")
    _depth_axes(ax, title)
    return ax


def _depth_axes(ax, title: str, ncol: int = 1):
    """Log wavelength axis with plain µm ticks, depth in ppm, title and legend."""
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks([0.6, 1, 1.5, 2, 3, 4, 5])
    ax.get_xaxis().set_major_formatter(ScalarFormatter())
    ax.set_xlabel("wavelength (µm)")
    ax.set_ylabel("transit depth (ppm)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=ncol)


LABELS = {"model": "trained model", "catalog": "catalog only (GBT)", "band_depths": "band depths (LR)",
          "spectrum_gbt": "full spectrum (GBT)", "oracle": "oracle ceiling"}
TARGET_LABELS = {"log10_vmr_H2O": "log₁₀ H2O", "log10_vmr_CO2": "log₁₀ CO2", "log10_vmr_CH4": "log₁₀ CH4",
                 "log10_vmr_O2": "log₁₀ O2", "log10_vmr_O3": "log₁₀ O3", "temperature_k": "T (K)",
                 "log10_surface_pressure_pa": "log₁₀ p_surf (bar)", "log10_cloud_top_pa": "log₁₀ p_cloud (bar)"}
PA_PER_BAR_LOG10 = 5.0  # the targets are in log10 Pa; every report shows pressures in bar (01 too)


def in_bar(names, values: np.ndarray) -> np.ndarray:
    """``values`` [..., len(names)] with the pressure targets moved from log10 Pa to log10 bar."""
    out = np.array(values, dtype=float, copy=True)
    for k, n in enumerate(names):
        if n.endswith("_pa"):
            out[..., k] -= PA_PER_BAR_LOG10
    return out
TRANSIT_TICKS = (1, 3, 10, 30, 100)


def _transit_axis(ax):
    ax.set_xscale("log")
    ax.set_xticks(TRANSIT_TICKS)
    ax.set_xticklabels([str(t) for t in TRANSIT_TICKS])
    ax.set_xlabel("transits")


def detection_curves(axes, curves: pd.DataFrame, metric: str = "auroc"):
    """``metric`` vs number of transits, one panel per gas, one line per predictor with its 95%
    bootstrap interval; the oracle (when present) as a dashed black ceiling."""
    gases = list(dict.fromkeys(curves["gas"]))
    for ax, gas in zip(np.ravel(axes), gases, strict=False):
        sub = curves[curves["gas"] == gas]
        for base, b in sub.groupby("baseline", sort=False):
            b = b.sort_values("n_transits")
            if base == "oracle":
                ax.plot(b["n_transits"], b[metric], color="black", ls="--", lw=1.2, label=LABELS[base])
                continue
            ax.plot(b["n_transits"], b[metric], marker="o", ms=3, lw=2 if base == "model" else 1,
                    label=LABELS.get(base, base))
            ax.fill_between(b["n_transits"], b[f"{metric}_lo"], b[f"{metric}_hi"], alpha=0.15)
        ax.axhline(0.5 if metric == "auroc" else 0.0, color="grey", lw=0.8, ls=":")
        _transit_axis(ax)
        ax.set_ylim(0.3 if metric == "auroc" else 0.0, 1.02)
        ax.set_title(gas)
        ax.set_ylabel(metric.upper() if metric == "auroc" else metric)
    for ax in np.ravel(axes)[len(gases):]:
        ax.set_axis_off()
    np.ravel(axes)[0].legend(fontsize=7, loc="lower right")
    return axes


def paired_deltas(axes, paired: pd.DataFrame):
    """ΔAUROC (model − baseline) vs transits with its paired 95% interval, one panel per gas, one
    line per baseline; above the zero line: the model is better."""
    gases = list(dict.fromkeys(paired["gas"]))
    for ax, gas in zip(np.ravel(axes), gases, strict=False):
        sub = paired[paired["gas"] == gas]
        for k, (base, b) in enumerate(sub.groupby("against", sort=False)):
            b = b.sort_values("n_transits")
            x = b["n_transits"] * (1 + 0.06 * (k - 1))  # side by side
            ax.errorbar(x, b["delta_auroc"], yerr=[b["delta_auroc"] - b["delta_lo"], b["delta_hi"] - b["delta_auroc"]],
                        fmt="o", ms=3, lw=1, capsize=2, label=f"vs {LABELS.get(base, base)}")
        ax.axhline(0.0, color="black", lw=0.8)
        _transit_axis(ax)
        ax.set_title(gas)
        ax.set_ylabel("ΔAUROC (model − baseline)")
    np.ravel(axes)[0].legend(fontsize=7)
    return axes


def expected_coverage(ax, coverage: pd.DataFrame):
    """Empirical coverage of the posterior's highest-density regions vs the credible level, per number
    of transits (thin) and over every test spectrum (thick); the diagonal is calibrated, below it
    over-confident."""
    for n, c in coverage.groupby("n_transits"):
        if n == 0:
            ax.plot(c["level"], c["coverage"], color="black", lw=2, label="all test spectra")
        else:
            ax.plot(c["level"], c["coverage"], lw=0.8, alpha=0.7, label=f"{n} transits")
    return _unit_diagonal(ax, "credible level", "fraction of truths inside", "expected coverage of the posterior")


def interval_calibration(ax, calibration: pd.DataFrame):
    """Observed vs nominal coverage of the posterior's central intervals, one line per retrieval
    target (on the diagonal when calibrated; below it: over-confident)."""
    for target, c in calibration.groupby("target", sort=False):
        ax.plot(c["nominal"], c["observed"], marker=".", lw=1, label=TARGET_LABELS.get(target, target))
    return _unit_diagonal(ax, "nominal level of the central interval", "observed coverage (test hosts)",
                          "marginal calibration per target")


def _unit_diagonal(ax, xlabel: str, ylabel: str, title: str):
    """The frame of a calibration plot: the unit square, its diagonal (calibrated), labels, legend."""
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return ax


def corner(fig, samples: np.ndarray, truth: np.ndarray, names: list[str], title: str = ""):
    """A corner plot of posterior samples [S, k] for k targets: marginal histograms on the diagonal,
    pairwise scatter below it, the truth as lines."""
    k = len(names)
    axes = fig.subplots(k, k)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(samples[:, i], bins=25, color="tab:blue", alpha=0.7)
                ax.axvline(truth[i], color="black", lw=1)
                ax.set_yticks([])
            else:
                ax.scatter(samples[:, j], samples[:, i], s=2, alpha=0.3)
                ax.axvline(truth[j], color="black", lw=0.8)
                ax.axhline(truth[i], color="black", lw=0.8)
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return axes


def retrieval_scatter(ax, truth, mean, std, name: str):
    """Posterior mean ± 1 σ against the truth for one retrieval target."""
    ax.errorbar(truth, mean, yerr=std, fmt=".", ms=2, lw=0.4, alpha=0.5)
    lo, hi = float(np.nanmin(truth)), float(np.nanmax(truth))
    ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1)
    ax.set_xlabel(f"true {TARGET_LABELS.get(name, name)}")
    ax.set_ylabel("posterior mean (± 1 σ)")
    ax.set_title(TARGET_LABELS.get(name, name))
    return ax
