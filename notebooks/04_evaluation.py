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
# Does the model beat simple physics and simple ML on planets from systems it never saw, and can
# its probabilities be trusted? **Status: model evaluation is not implemented yet (evaluation
# issue), and no model has been trained.** What is here already: the prevalence of the label on
# each host-grouped split, and why plain accuracy cannot be the headline metric.

# %% tags=["parameters"]
run_dir: str = "../outputs/notebook_defaults"  # run folder: every product of the run is written here
seed: int = 0  # global random seed (data split, init, sampling)
bootstrap_samples: int = 200  # bootstrap resamples (by host) for confidence intervals

# %%
import json
from pathlib import Path

import pandas as pd

from astrobio_lib import config
from astrobio_lib.report import completion_marker, data_banner

cfg = config.from_namespace(globals())
print(data_banner(cfg.run.run_dir))
labels_path = Path(cfg.run.run_dir) / "data" / "labels.csv"
if not labels_path.is_file():
    raise FileNotFoundError(f"{labels_path} not found: run 01_data_validation for this run first")
labels = pd.read_csv(labels_path)

# %% [markdown]
# ## Prevalence per split, and the majority-class baseline
# Answering "not habitable" for every planet scores the accuracy below while finding no habitable
# planet at all: accuracy is shown only beside this number, never as the headline.

# %%
decided = labels.dropna(subset=["habitable"])
rows = []
for split, part in decided.groupby("split"):
    positives = int(part["habitable"].astype(bool).sum())
    rows.append({"split": split, "planets_decidable": len(part), "habitable": positives,
                 "prevalence_%": round(100 * positives / len(part), 2),
                 "majority_class_accuracy_%": round(100 * (1 - positives / len(part)), 2)})
prevalence = pd.DataFrame(rows).set_index("split")
prevalence

# %% [markdown]
# ## Verdict

# %%
test = prevalence.loc["test"].to_dict()
(Path(cfg.run.run_dir) / "evaluation.json").write_text(json.dumps(
    {"status": "no model evaluated yet", "prevalence": prevalence.reset_index().to_dict("records")}, indent=2))
print(f"evaluation verdict: NO MODEL YET. On the test split, {int(test['habitable'])} of "
      f"{int(test['planets_decidable'])} decidable planets are habitable ({test['prevalence_%']}%); "
      f"'never habitable' scores {test['majority_class_accuracy_%']}% accuracy.")

# %% tags=["completion-marker"]
completion_marker("04_evaluation")
