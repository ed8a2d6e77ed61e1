"""The gas-detection task's sections of notebooks 01 and 04: tables and figures shown in the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrobio_lib.report import relative, section, show
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
          f"shared store {relative(gas.manifest['store'], '.')}: "
          + ("all present already (reused)" if not g["spectra_generated"] else
             f"{g['spectra_generated']} generated in {g['seconds']} s ({g['spectra_per_s']} spectra/s, {g['engine']}, "
             f"{g['workers']} workers)"))
    sat = gas.manifest.get("saturation")
    if sat:
        left_out, kept = sat["excluded_hosts"], sat["saturating_hosts_kept"]
        print(f"bright limit: NIRSpec PRISM saturates on hosts brighter than J = {sat['limit_j_mag']} ({sat['source']}); "
              f"saturation: {sat['mode']} — "
              + (f"{len(left_out)} brighter hosts left out ({', '.join(left_out[:8])}{', …' if len(left_out) > 8 else ''})"
                 if sat["mode"] == "exclude" else
                 f"{len(kept)} saturating hosts KEPT and simulated with PRISM anyway (optimistic): {', '.join(kept)}"))
    floor = report.details.get("noise_floor", "white")
    fn = gas_spectra.floor_noise(gas, floor).describe()
    print(f"noise floor: {floor} — {gas.manifest['generator']['noise_floor_ppm']:.0f} ppm per bin"
          + (f", {100 * fn['correlated_fraction']:.0f}% of its variance correlated in wavelength (squared-exponential "
             f"kernel, length {fn['correlation_length_ln_lambda']} in ln λ; astrobio_lib/data/observing.py)"
             if floor == "correlated" else ", independent per bin"))
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
    noisy = {n: (gas_spectra.noisy(gas, np.array([i]), n, 1, seed=n, floor=floor)[0][0], gas.sigma(n, [i])[0])
             for n in (1, 10, 100)}
    present = ", ".join(x for x, p in zip(tx.GASES, gas.present[i], strict=True) if p) or "none"
    plots.noise_levels(axes[1], gas.wavelength_um, gas.depth[i], noisy,
                       title=f"{row['pl_name']}: drawn atmosphere ({present}), photon noise + {floor} 20 ppm floor")
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
    """Notebook 04: detection curves against the baselines and the oracle ceiling, the paired verdict
    against every baseline, the gap to the ceiling, and the posterior — its coverage, its accuracy and
    a few posteriors drawn."""
    import matplotlib.pyplot as plt

    from astrobio_lib.tasks.gas_detection import plots
    from astrobio_lib.tasks.gas_detection.dataset import RETRIEVAL_TARGETS
    from astrobio_lib.tasks.gas_detection.evaluation import NAMES

    r = evaluation.details
    curves = r["curves"]
    section("Detection curves on unseen host stars",
            "AUROC per gas vs number of transits with its 95% bootstrap interval (host stars, then spectra within "
            "them): the trained model, the three baselines — (1) gradient boosting on the catalog alone (the "
            "circularity check, ~0.5 by construction), (2) logistic regression on band depths at the gases' "
            "features, (3) gradient boosting on the full spectrum — and, dashed, the **oracle**: the exact "
            "likelihood-ratio test of a detector that knows every parameter but whether the gas is there, the "
            "physical limit for this noise. All on the same noisy draws of spectra whose stars never appear in "
            f"training; noise floor: {r['noise_floor']}.")
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), sharey=True)
    plots.detection_curves(axes, curves)
    fig.suptitle(f"AUROC vs transits, test hosts ({curves['n_test_hosts'].iloc[0]} stars, "
                 f"{curves['n_test_spectra'].iloc[0]} noiseless spectra x {r['noise_draws']} noise draws) — SIMULATED")
    plt.tight_layout()
    plt.show()
    table = curves.pivot_table(index=["gas", "n_transits"], columns="baseline", values="auroc").round(3)
    show(table.rename(columns=NAMES))

    strongest = r["strongest_baseline"]
    section("Verdict: the model against every baseline, paired",
            "ΔAUROC = model − baseline on the same test items, with the 95% interval of the difference from the "
            "paired bootstrap (host stars, then spectra within them, their noise draws together). `beats`: the "
            "interval is above zero; `worse`: below; otherwise `not distinguishable`. The strongest baseline "
            f"(highest mean AUROC over gases and N) is **{NAMES[strongest]}**.")
    print(f"{evaluation.status}: {evaluation.headline}")
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.4), sharey=True)
    plots.paired_deltas(axes, r["paired_table"][r["paired_table"]["against"] != "catalog"])
    fig.suptitle("ΔAUROC against the spectral baselines (95% paired interval) — SIMULATED")
    plt.tight_layout()
    plt.show()
    paired = r["paired_table"].copy()
    paired["against"] = paired["against"].map(NAMES)
    paired["ΔAUROC [95%]"] = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                              zip(paired["delta_auroc"], paired["delta_lo"], paired["delta_hi"], strict=True)]
    show(paired.pivot_table(index=["gas", "n_transits"], columns="against", values="verdict", aggfunc="first"))
    show(paired.pivot_table(index=["gas", "n_transits"], columns="against", values="ΔAUROC [95%]", aggfunc="first"))
    gap = r["gap_table"]
    if len(gap):
        print("share of the gap between the best spectral baseline and the oracle ceiling that the model closes "
              "(1 = at the ceiling, 0 = no better than the baseline, negative = below it; blank where the gap is "
              "under 0.01):")
        show(gap.pivot_table(index="gas", columns="n_transits", values="gap_closed").round(2))

    section("The posterior: calibrated, accurate, and what it looks like",
            "The retrieval is a normalising-flow posterior over the 8 latent targets (each gas's log abundance — "
            "for an absent gas, the prior draw that changes nothing —, temperature, surface pressure, cloud top). "
            "**Expected coverage**: how often the truth lies in the posterior's α highest-density region, for every "
            "α (on the diagonal when calibrated, below it over-confident). Then each target's central intervals, "
            "and the accuracy of the posterior mean where the target exists (a present gas, a cloud deck).")
    from astrobio_lib.tasks.gas_detection import posterior

    status, words = posterior.summary(r["coverage"])
    print(f"{status}: {words}")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    plots.expected_coverage(axes[0], r["coverage"])
    plots.interval_calibration(axes[1], r["calibration"])
    pred = r["pred"]
    at30 = pred["n_transits"] == 30
    truth = r["truth"][pred["row"][at30]]
    k = RETRIEVAL_TARGETS.index("log10_vmr_CO2")
    has = np.isfinite(truth[:, k])
    plots.retrieval_scatter(axes[2], truth[has, k], pred["mean"][at30][has, k], pred["std"][at30][has, k],
                            RETRIEVAL_TARGETS[k])
    axes[2].set_title("log₁₀ CO2 where present, 30 transits")
    plt.tight_layout()
    plt.show()
    retrieval = r["retrieval_table"]
    show(retrieval.pivot_table(index="target", columns="n_transits", values=["r2", "coverage_68"]).round(2)
         .rename(index=plots.TARGET_LABELS))
    shown = ["log10_vmr_H2O", "log10_vmr_CO2", "log10_surface_pressure_pa", "temperature_k"]
    idx = [RETRIEVAL_TARGETS.index(t) for t in shown]
    for ex in r["examples"][:2]:
        from astrobio_lib.data.transmission import GASES

        present = ", ".join(g for g, p in zip(GASES, np.isfinite(r["truth"][ex["row"]][:5]), strict=True) if p) or "none"
        probs = ", ".join(f"{g} {p:.2f}" for g, p in zip(GASES, ex["prob"], strict=True))
        fig = plt.figure(figsize=(6.5, 6.5))
        plots.corner(fig, plots.in_bar(shown, ex["samples"][:, idx]), plots.in_bar(shown, ex["truth"][idx]),
                     [plots.TARGET_LABELS[t] for t in shown],
                     title=f"one test spectrum, 30 transits — present: {present}\nP(present): {probs}; lines: truth")
        plt.show()
