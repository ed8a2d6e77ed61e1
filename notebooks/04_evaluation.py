# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Evaluation
# Does the model beat simple baselines on host systems it never saw, and can its uncertainties be
# trusted? Every interval is a 95% bootstrap that resamples whole host stars of the test split.
#
# **`task: gas_detection`** (the product's question): which gases are in a rocky planet's atmosphere,
# and how much, from a noisy SIMULATED JWST NIRSpec PRISM spectrum of N transits? Per gas and N:
# AUROC, F1 and recall at 5% false positives of the trained model against (1) gradient boosting on the
# catalog alone — the circularity check, ~0.5 by construction; (2) logistic regression on band depths at
# the gases' features; (3) gradient boosting on the full binned spectrum — all on the same noisy draws;
# the verdict against (3) needs non-overlapping intervals. Then the retrieval: R², RMSE and the coverage
# of the predicted 68% / 95% intervals, and a calibration plot.
#
# **`task: habitability`** (catalog context): the hard label *is* the HZ + rocky rule on the catalog
# point estimates, so that rule is perfect on it by construction and gradient boosting on the catalog
# relearns it; what physics alone cannot give is the uncertainty — the Brier score against the
# Monte-Carlo soft label is the headline there. Plain accuracy is shown only beside the majority-class
# accuracy, because answering "not habitable" every time already scores it.

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
task: str = "habitability"  # what the model learns: habitability (the catalog label) | gas_detection (gases and atmosphere from SIMULATED JWST spectra; needs gas_planets > 0)
bootstrap_samples: int = 200  # bootstrap resamples (by host) for confidence intervals
gas_noise_draws: int = 4  # noisy draws per noiseless spectrum and number of transits (gas detection)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from astrobio_lib import config, evaluate, plots
from astrobio_lib.report import completion_marker, data_banner, record_verdict, start_notebook

cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "04_evaluation")  # library logs → run.log; warnings shown as text
print(data_banner(cfg.run.run_dir))
gas_task = cfg.train.task == "gas_detection"
print(f"task {cfg.train.task}: " + ("the model was trained on gas detection; its habitability heads were not, so "
                                    "the habitability evaluation is left out" if gas_task else
                                    "gas detection below is the baselines' (the model was not trained on it)"))

# %% [markdown]
# ## Gas detection from SIMULATED JWST spectra: detection curves
# On the test host stars (noisy draws of spectra whose stars never appear in training), AUROC per gas vs
# number of transits with its 95% host-bootstrap interval: the trained model (task `gas_detection`) and the
# three baselines on the same draws.

# %%
import numpy as np

from astrobio_lib import gas_detection
from astrobio_lib.data import gas_dataset, gas_spectra
from astrobio_lib.report import progress

gas_dir = Path(cfg.run.run_dir) / "data" / "gas_spectra"
curves = gas_result = None
bootstrap = min(cfg.eval.bootstrap_samples, 100)
if (gas_dir / "spectra.npz").is_file():
    gas = gas_spectra.load(gas_dir)
    split = gas_spectra.host_split(gas.hostname, cfg.run.seed)
    steps = len(gas_detection.TRANSITS) * (len(gas_detection.BASELINES) + gas_task)
    with progress(None, total=steps, desc="detection curves") as bar:
        report_progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
        if gas_task:
            gas_result = evaluate.evaluate_gas_run(cfg.run.run_dir, draws=cfg.eval.gas_noise_draws, bootstrap=bootstrap,
                                                   seed=cfg.run.seed, progress=report_progress)
            curves = gas_result["curves"]
            print(f"checkpoint {gas_result['checkpoint']}")
        else:
            curves = gas_detection.detection_curves(gas, split, draws=cfg.eval.gas_noise_draws, bootstrap=bootstrap,
                                                    seed=cfg.run.seed, progress=report_progress)
            curves.to_csv(Path(cfg.run.run_dir) / "gas_detection_curves.csv", index=False)
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), sharey=True)
    plots.detection_curves(axes, curves)
    fig.suptitle(f"AUROC vs transits, test hosts ({curves['n_test_hosts'].iloc[0]} stars, "
                 f"{curves['n_test_spectra'].iloc[0]} noiseless spectra x {cfg.eval.gas_noise_draws} noise draws) — SIMULATED")
    plt.tight_layout()
    plt.show()
else:
    print(f"no gas-detection spectra in {gas_dir} (gas_planets: 0 in 01_data_validation)")

# %%
if curves is not None:
    table = curves.pivot_table(index=["gas", "n_transits"], columns="baseline", values="auroc").round(3)
    best = curves[curves["baseline"] != "catalog"].sort_values("auroc").groupby(["gas", "n_transits"]).tail(1)
    catalog_max = curves[curves["baseline"] == "catalog"]["auroc"].max()
    print(f"catalog-only AUROC at most {catalog_max:.2f} over every gas and N (the circularity check); "
          f"recall at 5% false positives of the best predictor at 30 transits: "
          + ", ".join(f"{r.gas} {r.recall_at_5pct_fpr:.2f} ({r.baseline})" for r in best[best["n_transits"] == 30].itertuples()))
table if curves is not None else None

# %% [markdown]
# ## Verdict per gas and N: the model against gradient boosting on the full spectrum
# `beats` / `worse` only where the 95% host-bootstrap intervals do not overlap.

# %%
gas_result["verdict_table"].set_index(["gas", "n_transits"]) if gas_result else None

# %% [markdown]
# ## Retrieval: abundances, temperature, pressures — and whether the predicted uncertainty holds
# R², RMSE and the coverage of the model's predicted 68% and 95% Gaussian intervals on the test hosts
# (abundances only where the gas is present, cloud top only with a deck). A calibrated model covers 0.68
# and 0.95; lower is over-confident.

# %%
if gas_result:
    retrieval = gas_result["retrieval_table"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    plots.interval_calibration(axes[0], gas_result["calibration"])
    pred = gas_result["pred"]
    at30 = pred["n_transits"] == 30
    truth = gas_result["truth"][pred["row"][at30]]
    for ax, k in zip(axes[1:], (gas_dataset.RETRIEVAL_TARGETS.index("log10_vmr_CO2"),
                                gas_dataset.RETRIEVAL_TARGETS.index("log10_surface_pressure_pa")), strict=True):
        has = np.isfinite(truth[:, k])
        plots.retrieval_scatter(ax, truth[has, k], pred["mean"][at30][has, k], pred["std"][at30][has, k],
                                f"{gas_dataset.RETRIEVAL_TARGETS[k]} (30 transits)")
    plt.tight_layout()
    plt.show()
retrieval.pivot_table(index="target", columns="n_transits", values=["r2", "coverage_68", "coverage_95"]).round(2) \
    if gas_result else None

# %% [markdown]
# ## Habitability (catalog context; `task: habitability` only)

# %%
result = None
if not gas_task:
    result = evaluate.evaluate_run(cfg.run.run_dir, bootstrap=cfg.eval.bootstrap_samples, seed=cfg.run.seed,
                                   progress=True)
    print(f"checkpoint {result['checkpoint']} ({result['model_preset']}); test split: {result['n_test_planets']} "
          f"decidable planets from {result['n_test_hosts']} host systems, {result['model']['positives']} habitable "
          f"(prevalence {result['model']['prevalence']:.3f})")
    rows = []
    for name, intervals in result["intervals"].items():
        row = {"predictor": name}
        for metric, (point, low, high) in intervals.items():
            row[metric] = f"{point:.3f} [{low:.3f}, {high:.3f}]"
        rows.append(row)
    m = result["model"]
    print(f"accuracy {m['accuracy']:.3f} vs majority-class accuracy {m['majority_accuracy']:.3f}: with "
          f"{100 * m['prevalence']:.1f}% positives, 'never habitable' already scores the latter, so accuracy is not "
          f"the headline.")
pd.DataFrame(rows).set_index("predictor")[["auprc", "auroc", "brier_soft", "brier", "ece", "balanced_accuracy", "mcc",
                                           "f1"]] if result else None

# %%
if result:
    pred = pd.DataFrame(result["predictions"])
    scored = {"model": pred["prob"], **{c.replace("baseline_", ""): pred[c] for c in pred.columns
                                        if c.startswith("baseline_")}}
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.5))
    plots.precision_recall(axes[0], pred["y"].astype(int), scored, m["prevalence"])
    plots.reliability_diagram(axes[1], pd.DataFrame(result["reliability"]))
    plots.confusion(axes[2], pred["y"], pred["prob"])
    plots.ablation_bars(axes[3], m["auprc"], result["ablations"])
    plt.tight_layout()
    plt.show()
pd.DataFrame(result["ablations"]).T[["auprc", "auroc", "brier_soft"]].round(3).assign(**result["tasks"]) if result else None

# %% [markdown]
# ## Verdict

# %%
print(data_banner(cfg.run.run_dir))
if gas_task and gas_result:
    v = gas_result["verdict_table"]
    counts = v["verdict"].value_counts().to_dict()
    print(f"gas-detection verdict (SIMULATED spectra; model vs full-spectrum gradient boosting, AUROC with 95% "
          f"host-bootstrap intervals over {len(v)} gas x N cells): " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    beats = counts.get("beats", 0)
    cov = gas_result["retrieval_table"]
    print(f"retrieval: median R² {cov['r2'].median():.2f}, 68% intervals cover {cov['coverage_68'].median():.2f}, "
          f"95% cover {cov['coverage_95'].median():.2f} (median over targets and N)")
    record_verdict(cfg.run.run_dir, "04_evaluation", "PASS" if beats and not counts.get("worse") else "WARN",
                   f"the model beats full-spectrum gradient boosting in {beats} of {len(v)} gas x N cells, is worse in "
                   f"{counts.get('worse', 0)}, not distinguishable in {counts.get('not distinguishable', 0)}")
elif result:
    print("evaluation verdict (Brier vs the soft label, and AUPRC, each with 95% host-bootstrap intervals; "
          "'beats' needs non-overlapping intervals):")
    print("\n".join("  " + line for line in result["verdicts"]))
    beaten = [line for line in result["verdicts"] if "BEATS" in line]
    record_verdict(cfg.run.run_dir, "04_evaluation", "PASS" if len(beaten) == len(result["verdicts"]) else "WARN",
                   "the model beats " + (f"{len(beaten)} of {len(result['verdicts'])} baselines on at least one metric"
                                         if beaten else "NO baseline on either metric with non-overlapping intervals"))
else:
    record_verdict(cfg.run.run_dir, "04_evaluation", "FAIL", "task: gas_detection but no gas-detection spectra")
    raise RuntimeError("task: gas_detection but no gas-detection spectra: run 01_data_validation with gas_planets > 0")

# %% tags=["completion-marker"]
completion_marker("04_evaluation")
