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
# Does the model beat simple physics and simple ML on planets from host systems it never saw, and
# can its probabilities be trusted? On the held-out test split (grouped by host), with 95%
# intervals from a bootstrap that resamples whole host systems: AUPRC, AUROC, Brier, calibration,
# balanced accuracy, MCC, F1 — against the majority class, the HZ + rocky rule, logistic
# regression and gradient boosting; each modality masked in turn; and the per-task heads.
#
# Read it knowing two things. (1) Positives are rare: plain accuracy is shown only beside the
# majority-class accuracy, because answering "not habitable" every time already scores it.
# (2) The hard label *is* the HZ + rocky rule on the catalog point estimates, so that rule is
# perfect on it by construction; what physics alone cannot give is the uncertainty — the Brier
# score against the Monte-Carlo soft label P(habitable) is the headline for that.

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
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
result = evaluate.evaluate_run(cfg.run.run_dir, bootstrap=cfg.eval.bootstrap_samples, seed=cfg.run.seed,
                               progress=True)
print(f"checkpoint {result['checkpoint']} ({result['model_preset']}); test split: {result['n_test_planets']} "
      f"decidable planets from {result['n_test_hosts']} host systems, {result['model']['positives']} habitable "
      f"(prevalence {result['model']['prevalence']:.3f})")

# %% [markdown]
# ## Metrics with 95% host-bootstrap intervals

# %%
rows = []
for name, intervals in result["intervals"].items():
    row = {"predictor": name}
    for metric, (point, low, high) in intervals.items():
        row[metric] = f"{point:.3f} [{low:.3f}, {high:.3f}]"
    rows.append(row)
pd.DataFrame(rows).set_index("predictor")[["auprc", "auroc", "brier_soft", "brier", "ece", "balanced_accuracy", "mcc", "f1"]]

# %%
m = result["model"]
print(f"accuracy {m['accuracy']:.3f} vs majority-class accuracy {m['majority_accuracy']:.3f}: with "
      f"{100 * m['prevalence']:.1f}% positives, 'never habitable' already scores the latter, so accuracy is not the headline.")

# %% [markdown]
# ## Curves and calibration

# %%
pred = pd.DataFrame(result["predictions"])
scored = {"model": pred["prob"], **{c.replace("baseline_", ""): pred[c] for c in pred.columns if c.startswith("baseline_")}}
fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
plots.precision_recall(axes[0], pred["y"].astype(int), scored, m["prevalence"])
plots.reliability_diagram(axes[1], pd.DataFrame(result["reliability"]))
plots.confusion(axes[2], pred["y"], pred["prob"])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Ablation: each modality hidden in turn

# %%
fig, ax = plt.subplots(figsize=(7, 3))
plots.ablation_bars(ax, m["auprc"], result["ablations"])
plt.tight_layout()
plt.show()
pd.DataFrame(result["ablations"]).T[["auprc", "auroc", "brier_soft"]].round(3)

# %% [markdown]
# ## The other heads

# %%
pd.Series(result["tasks"])

# %% [markdown]
# ## Gas detection from SIMULATED JWST spectra: the baselines to beat
# The question the catalog cannot answer (built by `01_data_validation`): which gases are in a
# planet's atmosphere, from N transits of JWST NIRSpec PRISM? Per gas and N, on the test host stars
# (noisy draws of spectra whose stars never appear in training): AUROC with its 95% host-bootstrap
# interval for (1) gradient boosting on the catalog alone — the circularity check, ~0.5 by
# construction; (2) logistic regression on band depths at the gases' features; (3) gradient boosting on
# the full binned spectrum. **The multimodal model is not yet trained on this task** (its heads still
# predict the catalog label above): these curves are what it will have to beat.

# %%
import numpy as np

from astrobio_lib import gas_detection
from astrobio_lib.data import gas_spectra
from astrobio_lib.report import progress

gas_dir = Path(cfg.run.run_dir) / "data" / "gas_spectra"
curves = None
if (gas_dir / "spectra.npz").is_file():
    gas = gas_spectra.load(gas_dir)
    split = gas_spectra.host_split(gas.hostname, cfg.run.seed)
    steps = len(gas_detection.TRANSITS) * len(gas_detection.BASELINES)
    with progress(None, total=steps, desc="detection curves") as bar:
        curves = gas_detection.detection_curves(gas, split, draws=cfg.eval.gas_noise_draws,
                                                bootstrap=min(cfg.eval.bootstrap_samples, 100), seed=cfg.run.seed,
                                                progress=lambda done, total: bar.update(done - bar.n))
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
          f"recall at 5% false positives of the best spectral baseline at 30 transits: "
          + ", ".join(f"{r.gas} {r.recall_at_5pct_fpr:.2f} ({r.baseline})" for r in best[best["n_transits"] == 30].itertuples()))
table if curves is not None else None

# %% [markdown]
# ## Verdict

# %%
print(data_banner(cfg.run.run_dir))
print("evaluation verdict (Brier vs the soft label, and AUPRC, each with 95% host-bootstrap intervals; "
      "'beats' needs non-overlapping intervals):")
print("\n".join("  " + line for line in result["verdicts"]))
beaten = [line for line in result["verdicts"] if "BEATS" in line]
record_verdict(cfg.run.run_dir, "04_evaluation", "PASS" if len(beaten) == len(result["verdicts"]) else "WARN",
               "the model beats " + (f"{len(beaten)} of {len(result['verdicts'])} baselines on at least one metric"
                                     if beaten else "NO baseline on either metric with non-overlapping intervals"))

# %% tags=["completion-marker"]
completion_marker("04_evaluation")
