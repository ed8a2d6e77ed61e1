"""The gas-detection task's sections of notebooks 01 and 04: tables and figures shown in the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrobio_lib.report import section, show
from astrobio_lib.tasks.spec import DataReport, Evaluation


def show_data(report: DataReport) -> None:
    """Notebook 01: the SIMULATED spectra the model trains on — priors, what each gas does to a
    spectrum, the noise at 1 / 10 / 100 transits, the drawn truths, the circularity check, the split."""
    import matplotlib.pyplot as plt

    from astrobio_lib.data import gas_spectra
    from astrobio_lib.data import transmission as tx
    from astrobio_lib.tasks.gas_detection import plots

    gas = report.details["spectra"]
    section("The question: gas detection from SIMULATED JWST spectra",
            "*Given a noisy transmission spectrum from N JWST transits, which gases are there, how much, and how "
            "sure are we?* Real planets (rocky, one per host star) get atmospheres drawn from stated priors — the "
            "hidden truth — and TauREx 3 computes their transmission spectra (NIRSpec PRISM range, R = 50); the "
            "noise is the star's photon noise through JWST plus a 20 ppm floor. Everything in this section is "
            "**simulated** (`astrobio_lib/data/transmission.py` gives the physics, the priors and what is left out). "
            "The model sees these noisy spectra and the planet's catalog row — nothing else.")
    g = gas.manifest["generation"]
    print(f"{len(gas.depth)} SIMULATED spectra ({gas.manifest['n_planets']} real rocky planets x "
          f"{gas.manifest['atmospheres_per_planet']} drawn atmospheres, {len(gas.wavelength_um)} bins "
          f"{gas.edges_um[0]:.2f}-{gas.edges_um[-1]:.2f} µm) with TauREx {gas.manifest['opacities']['taurex']}, in the "
          f"shared store {gas.manifest['store']}: "
          + ("all present already (reused)" if not g["spectra_generated"] else
             f"{g['spectra_generated']} generated in {g['seconds']} s ({g['spectra_per_s']} spectra/s, {g['engine']}, "
             f"{g['workers']} workers)"))
    show(pd.DataFrame({"gas": tx.GASES, "present_%": (100 * gas.present.mean(0)).round(1),
                       "log10 VMR range when present": [f"{lo} … {hi}" for lo, hi in (tx.VMR_PRIORS[x] for x in tx.GASES)],
                       "opacity sha256": [gas.manifest["opacities"]["opacity_sha256"][x][:12] + "…" for x in tx.GASES]}))

    section("What each gas does, and the noise")
    row = gas.planets.iloc[0]
    star, body = tx.bodies_from_row(row.to_dict())
    mid = {x: sum(tx.VMR_PRIORS[x]) / 2 for x in tx.GASES}
    wl, base = tx.spectrum(star, body, tx.Atmosphere(288.0, 1e5, {}))
    with_gas = {f"{x} (1e{mid[x]:.1f})": tx.spectrum(star, body, tx.Atmosphere(288.0, 1e5, {x: mid[x]}))[1]
                for x in tx.GASES}
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.5))
    plots.gas_features(axes[0], wl, base, with_gas,
                       title=f"{row['pl_name']}: SIMULATED, 288 K, 1 bar N2, each gas alone at mid-prior")
    i = 0  # the first spectrum of this planet, noisy at three numbers of transits
    noisy = {n: (gas_spectra.noisy(gas, np.array([i]), n, 1, seed=n)[0][0], gas.sigma(n, [i])[0]) for n in (1, 10, 100)}
    present = ", ".join(x for x, p in zip(tx.GASES, gas.present[i], strict=True) if p) or "none"
    plots.noise_levels(axes[1], gas.wavelength_um, gas.depth[i], noisy,
                       title=f"{row['pl_name']}: drawn atmosphere ({present}), JWST photon noise + 20 ppm floor")
    plt.tight_layout()
    plt.show()

    section("The drawn truths (priors)")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    axes[0].bar(tx.GASES, 100 * gas.present.mean(0))
    axes[0].set_ylabel("% of atmospheres")
    axes[0].set_title("gas present (prior 50%)")
    for x, name in enumerate(tx.GASES):
        axes[1].hist(gas.log10_vmr[:, x][~np.isnan(gas.log10_vmr[:, x])], bins=15, alpha=0.5, label=name)
    axes[1].set_xlabel("log10 VMR when present")
    axes[1].legend(fontsize=7)
    axes[2].hist(gas.temperature_k, bins=20)
    axes[2].set_xlabel("temperature (K)")
    axes[3].hist(gas.log10_surface_pressure_pa - 5, bins=20)
    axes[3].set_xlabel("log10 surface pressure (bar)")
    fig.suptitle("prior draws (SIMULATED truths)")
    plt.tight_layout()
    plt.show()

    section("Circularity check and split")
    print("circularity check — catalog-only gradient boosting, out-of-fold by host star, AUROC per gas "
          "(~0.5 expected: no input is a function of the target): "
          + ", ".join(f"{k} {v:.2f}" for k, v in report.details["circularity"].items()))
    which, hosts = report.details["split"], report.details["hosts"]
    print("split by host star: " + ", ".join(f"{s} {hosts[s]} stars, {int((which == s).sum())} spectra"
                                             for s in ("train", "val", "test"))
          + "; no star and no noiseless spectrum in two splits")


def show_evaluation(evaluation: Evaluation) -> None:
    """Notebook 04: detection curves against the baselines, the verdict per gas and N, the retrieval's
    accuracy and calibration."""
    import matplotlib.pyplot as plt

    from astrobio_lib.tasks.gas_detection import plots
    from astrobio_lib.tasks.gas_detection.dataset import RETRIEVAL_TARGETS

    r = evaluation.details
    curves = r["curves"]
    section("Detection curves on unseen host stars",
            "AUROC per gas vs number of transits with its 95% host-bootstrap interval: the trained model and the "
            "three baselines — (1) gradient boosting on the catalog alone (the circularity check, ~0.5 by "
            "construction), (2) logistic regression on band depths at the gases' features, (3) gradient boosting "
            "on the full spectrum — all on the same noisy draws of spectra whose stars never appear in training.")
    print(f"checkpoint {r['checkpoint']}")
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), sharey=True)
    plots.detection_curves(axes, curves)
    fig.suptitle(f"AUROC vs transits, test hosts ({curves['n_test_hosts'].iloc[0]} stars, "
                 f"{curves['n_test_spectra'].iloc[0]} noiseless spectra x {r['noise_draws']} noise draws) — SIMULATED")
    plt.tight_layout()
    plt.show()
    best = curves[curves["baseline"] != "catalog"].sort_values("auroc").groupby(["gas", "n_transits"]).tail(1)
    catalog_max = curves[curves["baseline"] == "catalog"]["auroc"].max()
    print(f"catalog-only AUROC at most {catalog_max:.2f} over every gas and N (the circularity check); "
          f"recall at 5% false positives of the best predictor at 30 transits: "
          + ", ".join(f"{b.gas} {b.recall_at_5pct_fpr:.2f} ({b.baseline})" for b in best[best["n_transits"] == 30].itertuples()))
    show(curves.pivot_table(index=["gas", "n_transits"], columns="baseline", values="auroc").round(3))

    section("Verdict per gas and N: the model against gradient boosting on the full spectrum",
            "`beats` / `worse` only where the 95% host-bootstrap intervals do not overlap.")
    show(r["verdict_table"].set_index(["gas", "n_transits"]))

    section("Retrieval: abundances, temperature, pressures — and whether the predicted uncertainty holds",
            "R², RMSE and the coverage of the model's predicted 68% and 95% Gaussian intervals on the test hosts "
            "(abundances only where the gas is present, cloud top only with a deck). A calibrated model covers "
            "0.68 and 0.95; lower is over-confident.")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    plots.interval_calibration(axes[0], r["calibration"])
    pred = r["pred"]
    at30 = pred["n_transits"] == 30
    truth = r["truth"][pred["row"][at30]]
    for ax, k in zip(axes[1:], (RETRIEVAL_TARGETS.index("log10_vmr_CO2"),
                                RETRIEVAL_TARGETS.index("log10_surface_pressure_pa")), strict=True):
        has = np.isfinite(truth[:, k])
        plots.retrieval_scatter(ax, truth[has, k], pred["mean"][at30][has, k], pred["std"][at30][has, k],
                                f"{RETRIEVAL_TARGETS[k]} (30 transits)")
    plt.tight_layout()
    plt.show()
    retrieval = r["retrieval_table"]
    print(f"retrieval: median R² {retrieval['r2'].median():.2f}, 68% intervals cover {retrieval['coverage_68'].median():.2f}, "
          f"95% cover {retrieval['coverage_95'].median():.2f} (median over targets and N)")
    show(retrieval.pivot_table(index="target", columns="n_transits", values=["r2", "coverage_68", "coverage_95"]).round(2))
