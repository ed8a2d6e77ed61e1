"""Plots the reports share. Each function draws on a given matplotlib Axes and returns it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrobio_lib.data import habitability as hab


def hz_plane(ax, catalog: pd.DataFrame, labels: pd.DataFrame):
    """Planets on the T_eff-insolation plane with the Kopparapu et al. 2014 HZ boundaries.

    Rocky-sized planets (R <= 1.6 R_earth) are highlighted; the x axis runs from high to low
    insolation as is customary.
    """
    teff = np.linspace(*hab.TEFF_VALID_K, 200)
    styles = {"recent_venus": ("optimistic inner (recent Venus)", "--"),
              "runaway_greenhouse_1me": ("conservative inner (runaway greenhouse)", "-"),
              "maximum_greenhouse": ("conservative outer (maximum greenhouse)", "-"),
              "early_mars": ("optimistic outer (early Mars)", "--")}
    for name, (label, ls) in styles.items():
        ax.plot(hab.s_eff(name, teff), teff, ls, color="tab:green", lw=1.2, label=label)
    rocky = labels["rocky"].astype("boolean").fillna(False).to_numpy(bool)  # unknown radius: not rocky
    ax.scatter(catalog["pl_insol"][~rocky], catalog["st_teff"][~rocky], s=3, c="0.7",
               label="other planets")
    ax.scatter(catalog["pl_insol"][rocky], catalog["st_teff"][rocky], s=8, c="tab:blue",
               label="rocky-sized (R ≤ 1.6 R⊕)")
    ax.set_xscale("log")
    ax.set_xlim(20, 0.05)
    ax.set_ylim(2300, 7500)
    ax.axhspan(2300, hab.TEFF_VALID_K[0], color="0.9", zorder=0)
    ax.axhspan(hab.TEFF_VALID_K[1], 7500, color="0.9", zorder=0)
    ax.set_xlabel("insolation S (S⊕)")
    ax.set_ylabel("stellar effective temperature T_eff (K)")
    ax.set_title("Planets and the Kopparapu et al. 2014 habitable zone (grey: outside the fit)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def datacube_level_map(ax, cube, lat, lon, level: int = 0, title: str = ""):
    """Temperature (K) at one model level of a datacube [variable, level, lat, lon] on a lat-lon map
    (0° longitude = substellar point)."""
    im = ax.pcolormesh(lon, lat, np.asarray(cube)[0, level], cmap="coolwarm", shading="nearest")
    ax.figure.colorbar(im, ax=ax, label="temperature (K)")
    ax.set_xlabel("longitude from the substellar point (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(title or f"temperature at model level {level}")
    return ax


def spectrum_features(ax, wavelength_um, spectrum_sigma, title: str = ""):
    """A transmission spectrum as features above its median, in units of the noise (σ), with the
    gas bands of the forward model marked."""
    from astrobio_lib.data.spectra import BANDS_UM

    ax.plot(wavelength_um, spectrum_sigma, ".-", lw=1)
    colours = dict(zip(BANDS_UM, ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange"], strict=True))
    for gas, centres in BANDS_UM.items():
        for c in centres:
            if wavelength_um[0] <= c <= wavelength_um[-1]:
                ax.axvline(c, color=colours[gas], alpha=0.3, lw=3)
        ax.plot([], [], color=colours[gas], lw=3, alpha=0.5, label=gas)
    ax.set_xscale("log")
    ax.set_xlabel("wavelength (µm)")
    ax.set_ylabel("transit depth − median (σ of noise)")
    ax.set_title(title or "transmission spectrum (SYNTHETIC: analytic model + JWST-like noise)")
    ax.legend(fontsize=7, ncol=5)
    return ax


def memory_breakdown(ax, table, limit_gb=None, title: str = ""):
    """Stacked horizontal bars of GB per device by category, one bar per plan, with the
    device's usable limit drawn."""
    table.plot.barh(stacked=True, ax=ax, width=0.8, colormap="tab20")
    if limit_gb:
        ax.axvline(limit_gb, color="k", ls="--", lw=1, label=f"usable limit {limit_gb:.1f} GB")
    ax.set_xlabel("memory per device (GB)")
    ax.set_ylabel("")
    ax.set_title(title or "memory per device by category")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.invert_yaxis()
    return ax


def training_curves(axes, records: list[dict]):
    """Loss (total and habitability, with validation), learning rate, throughput and memory from
    ``metrics.jsonl`` records, on four axes."""
    steps = [r for r in records if "loss" in r]
    vals = [r for r in records if "val_loss" in r]
    rates = [r for r in records if "samples_per_s" in r]
    mem = [r for r in records if "cpu_rss_peak_gb" in r]
    ax = axes[0]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, label="train loss")
    ax.plot([r["step"] for r in steps], [r.get("loss_habitability", np.nan) for r in steps], lw=1,
            label="train habitability BCE")
    if vals:
        ax.plot([r["step"] for r in vals], [r["val_loss"] for r in vals], "o-", label="val loss")
        ax.plot([r["step"] for r in vals], [r["val_loss_habitability"] for r in vals], "s-", label="val habitability BCE")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend(fontsize=7)
    axes[1].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[1].set_xlabel("optimizer step")
    axes[1].set_ylabel("learning rate")
    axes[1].set_title("schedule")
    axes[2].plot([r["step"] for r in rates], [r["samples_per_s"] for r in rates], "o-")
    axes[2].set_xlabel("optimizer step")
    axes[2].set_ylabel("samples / s")
    axes[2].set_ylim(bottom=0)
    with_mfu = [r for r in rates if "mfu" in r]
    if with_mfu:  # model FLOPs utilisation against the GPU's dense bf16 peak, on a second axis
        twin = axes[2].twinx()
        twin.plot([r["step"] for r in with_mfu], [100 * r["mfu"] for r in with_mfu], "s--", color="tab:red")
        twin.set_ylabel("MFU (%)", color="tab:red")
        twin.set_ylim(bottom=0)
    axes[2].set_title("throughput" + (" and MFU" if with_mfu else " (MFU: n/a without a known GPU peak)"))
    keys = sorted({k for r in mem for k in r if k.endswith("_gb") and ("rss" in k or "peak" in k)})
    style = "o-" if len(mem) > 4 else "o"  # a few samples: points, not a line that implies a trend
    for k in keys:
        axes[3].plot([r["step"] for r in mem], [r.get(k, np.nan) for r in mem], style, label=memory_label(k))
    axes[3].set_xlabel("optimizer step")
    axes[3].set_ylabel("GB")
    axes[3].set_ylim(bottom=0)
    axes[3].set_title(f"memory ({len(mem)} samples)")
    if keys:
        axes[3].legend(fontsize=8)
    for ax in axes:
        ax.title.set_fontsize(12)
        ax.xaxis.label.set_fontsize(10)
        ax.yaxis.label.set_fontsize(10)
    return axes


def memory_label(key: str) -> str:
    """A readable legend entry for a memory key of ``metrics.jsonl``."""
    if key == "cpu_rss_peak_gb":
        return "host process peak RSS"
    for suffix, text in (("_allocated_gb", "allocated"), ("_reserved_gb", "reserved"), ("_peak_gb", "peak allocated")):
        if key.startswith("gpu") and key.endswith(suffix):
            return f"GPU {key[3:-len(suffix)]} {text}"
    return key


def precision_recall(ax, y, scored: dict, prevalence: float):
    """Precision-recall curves of the model and the baselines, with the prevalence (the
    no-skill line)."""
    from sklearn.metrics import precision_recall_curve

    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1))]
    for i, (name, p) in enumerate(scored.items()):
        if len(np.unique(y)) < 2:
            break
        prec, rec, _ = precision_recall_curve(y, p)
        # distinct dashes, thick model line drawn last: coinciding curves stay visible
        ax.step(rec, prec, where="post", label=name, lw=2.5 if name == "model" else 1.5,
                ls="-" if name == "model" else styles[1 + i % (len(styles) - 1)],
                zorder=3 if name == "model" else 2, alpha=0.9)
    ax.axhline(prevalence, color="0.5", ls=":", label=f"prevalence {prevalence:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall on the test split (unseen host systems)")
    ax.legend(fontsize=7)
    return ax


def reliability_diagram(ax, table):
    """Observed frequency against mean predicted probability per equal-mass bin."""
    ax.plot([0, 1], [0, 1], color="0.5", ls=":", label="perfect calibration")
    ax.plot(table["mean_predicted"], table["observed"], "o-", label="model")
    for _, r in table.iterrows():
        ax.annotate(str(int(r["count"])), (r["mean_predicted"], r["observed"]), fontsize=6,
                    textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("mean predicted P(habitable)")
    ax.set_ylabel("observed fraction habitable")
    ax.set_title("reliability (equal-mass bins; counts shown)")
    ax.legend(fontsize=7)
    return ax


def confusion(ax, y, p, threshold: float = 0.5):
    """2 x 2 confusion matrix at ``threshold``."""
    y = np.asarray(y, int)
    pred = (np.asarray(p) >= threshold).astype(int)
    m = np.array([[np.sum((y == a) & (pred == b)) for b in (0, 1)] for a in (0, 1)])
    ax.imshow(m, cmap="Blues")
    for a in range(2):
        for b in range(2):
            ax.text(b, a, str(m[a, b]), ha="center", va="center",
                    color="white" if m[a, b] > m.max() / 2 else "black")
    ax.set_xticks([0, 1], ["predicted no", "predicted yes"])
    ax.set_yticks([0, 1], ["not habitable", "habitable"])
    ax.set_title(f"confusion matrix (threshold {threshold})")
    return ax


def ablation_bars(ax, full: float, ablations: dict, metric: str = "auprc"):
    """The model's metric with each modality hidden, next to the full model."""
    names = ["all modalities", *[f"without {m}" for m in ablations]]
    values = [full, *[ablations[m][metric] for m in ablations]]
    ax.barh(names, values, color=["tab:blue"] + ["tab:orange"] * len(ablations))
    ax.set_xlabel(metric.upper())
    ax.set_title(f"ablation: {metric.upper()} with one modality hidden")
    ax.invert_yaxis()
    return ax


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
