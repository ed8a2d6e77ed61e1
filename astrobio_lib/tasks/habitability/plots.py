"""Plots of the habitability task's reports (notebooks 01 and 04). Each function draws on a given
matplotlib Axes and returns it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrobio_lib.data import habitable_zone as hab


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
