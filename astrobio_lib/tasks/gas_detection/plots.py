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


def detection_curves(axes, curves: pd.DataFrame, metric: str = "auroc"):
    """``metric`` vs number of transits, one panel per gas, one line per baseline with its 95%
    host-bootstrap interval."""
    gases = list(dict.fromkeys(curves["gas"]))
    for ax, gas in zip(np.ravel(axes), gases, strict=False):
        sub = curves[curves["gas"] == gas]
        for base, b in sub.groupby("baseline", sort=False):
            b = b.sort_values("n_transits")
            ax.plot(b["n_transits"], b[metric], marker="o", label=base)
            ax.fill_between(b["n_transits"], b[f"{metric}_lo"], b[f"{metric}_hi"], alpha=0.2)
        ax.axhline(0.5 if metric == "auroc" else 0.0, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0.3 if metric == "auroc" else 0.0, 1.02)
        ax.set_title(gas)
        ax.set_xlabel("transits")
        ax.set_ylabel(metric)
    for ax in np.ravel(axes)[len(gases):]:
        ax.set_axis_off()
    np.ravel(axes)[0].legend(fontsize=8)
    return axes


def interval_calibration(ax, calibration: pd.DataFrame):
    """Observed vs nominal coverage of the predicted central intervals, one line per retrieval target
    (on the diagonal when the predicted uncertainties are calibrated; below it: over-confident)."""
    for target, c in calibration.groupby("target", sort=False):
        ax.plot(c["nominal"], c["observed"], marker=".", lw=1, label=target.replace("log10_", ""))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage of the predicted interval")
    ax.set_ylabel("observed coverage (test hosts)")
    ax.set_title("retrieval calibration")
    ax.legend(fontsize=7)
    return ax


def retrieval_scatter(ax, truth, mean, std, name: str):
    """Predicted mean ± 1 σ against the truth for one retrieval target."""
    ax.errorbar(truth, mean, yerr=std, fmt=".", ms=2, lw=0.4, alpha=0.5)
    lo, hi = float(np.nanmin(truth)), float(np.nanmax(truth))
    ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel("predicted (± 1 σ)")
    ax.set_title(name)
    return ax
