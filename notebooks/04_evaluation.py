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
# Does the model beat simple baselines on host stars it never saw, and can its uncertainties be
# trusted? The run's **task** evaluates its best checkpoint on the test split against its baselines,
# with its verdict. Every interval is a 95% bootstrap that resamples whole host stars of the test split.

# %%
from typing import Optional  # the parameters cell's annotations need it

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
task: str = "gas_detection"  # what the model learns: gas_detection | habitability (one package each in astrobio_lib/tasks)
bootstrap_samples: int = 200  # bootstrap resamples (by host) for confidence intervals
gas_noise_draws: int = 4  # noisy draws per noiseless spectrum and number of transits (gas-detection task's evaluation)
noise_floor: str = "correlated"  # systematic noise floor of the gas-detection spectra (20 ppm per bin): white (independent bins) | correlated (half of it correlated in wavelength; astrobio_lib/data/observing.py)
spectra_store: Optional[str] = None  # folder of the shared store of simulated spectra; None: env ASTROBIO_SPECTRA_STORE, else ~/.cache/astrobio/spectra
simulation_workers: int = -1  # LocalCluster worker processes that simulate spectra (-1: every core; 0: in the notebook's own process)

# %%
from astrobio_lib import config, evaluate, tasks
from astrobio_lib.report import Progress, completion_marker, data_banner, record_verdict, start_notebook

cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "04_evaluation")  # library logs → run.log; warnings shown as text
task = tasks.of(cfg)
print(data_banner(cfg.run.run_dir))
print(f"task {task.name}: {task.title}")

# %%
with Progress(f"evaluating ({task.name})") as progress:
    evaluation = evaluate.evaluate(cfg, progress)
task.show_evaluation(evaluation)

# %% [markdown]
# ## Verdict

# %%
print(data_banner(cfg.run.run_dir))
record_verdict(cfg.run.run_dir, "04_evaluation", evaluation.status, evaluation.headline, evaluation.next_action)

# %% tags=["completion-marker"]
completion_marker("04_evaluation")
