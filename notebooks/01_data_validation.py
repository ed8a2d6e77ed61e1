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
# # 01 · Data validation
# Which data does this run learn from, and can it be trusted? The catalog comes first: the NASA
# Exoplanet Archive PSCompPars table (the shipped snapshot, a local file, or the archive when online —
# a SYNTHETIC population only when asked for), with its provenance. Then the run's **task** prepares
# the data it trains on (built once, reused when it exists with the same settings), shows it, checks it
# and records the data verdict.

# %%
from typing import Optional  # the parameters cell's annotations need it

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
task: str = "gas_detection"  # what the model learns: gas_detection | habitability (one package each in astrobio_lib/tasks)
catalog_source: str = "snapshot"  # auto (catalog_path, then archive, then the shipped snapshot) | file | archive | snapshot | synthetic
catalog_path: Optional[str] = None  # local PSCompPars CSV; None: env ASTROBIO_CATALOG
label_mc_samples: int = 256  # Monte-Carlo draws per planet for the soft label P(habitable)
val_fraction: float = 0.15  # fraction of planets (grouped by host) for validation
test_fraction: float = 0.15  # fraction of planets (grouped by host) for the test split
n_planets: int = 256  # planets to build with every modality (0: all); positives and climate-domain planets are always kept
climate_domain: str = "core"  # CLERO input domain a planet must lie in for a datacube: core | extended
metabolic_model: str = "textbook"  # cobra model for the metabolic graphs: textbook | iJO1366 | salmonella
text_max_len: int = 256  # tokens per planet description (bytes, or the llm_checkpoint tokenizer's tokens)
llm_checkpoint: Optional[str] = None  # pretrained Llama-family checkpoint directory (Hugging Face layout): its LLM and tokenizer replace the preset's; None: from scratch
shard_size: int = 128  # planets per dataset shard file
gas_planets: int = 40  # rocky planets (one per host star) for the SIMULATED spectra of the gas-detection task; 0: none
gas_atmospheres: int = 10  # atmospheres drawn per planet for the gas-detection spectra
saturation: str = "exclude"  # hosts NIRSpec PRISM saturates on (J < 10.5): exclude them from the gas-detection planets | keep them (simulated with PRISM anyway, flagged)
noise_floor: str = "correlated"  # systematic noise floor of the gas-detection spectra (20 ppm per bin): white (independent bins) | correlated (half of it correlated in wavelength; astrobio_lib/data/observing.py)
spectra_store: Optional[str] = None  # folder of the shared store of simulated spectra; None: env ASTROBIO_SPECTRA_STORE, else ~/.cache/astrobio/spectra
dask_scheduler: Optional[str] = None  # address of an existing Dask scheduler to simulate spectra on; None: env ASTROBIO_DASK_SCHEDULER, else a LocalCluster on every core
simulation_workers: int = -1  # LocalCluster worker processes that simulate spectra (-1: every core; 0: in the notebook's own process)

# %%
from pathlib import Path

import pandas as pd

from astrobio_lib import config, tasks
from astrobio_lib.data import catalog as cat
from astrobio_lib.report import Progress, completion_marker, record_verdict, start_notebook

pd.set_option("display.max_colwidth", 120)
cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "01_data_validation")  # library logs → run.log; warnings shown as text
task = tasks.of(cfg)
data_dir = Path(cfg.run.run_dir) / "data"
planets, provenance = cat.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path, cache_dir=data_dir)
provenance.save(data_dir)  # the data banner atop every report of this run
print(provenance.banner())
print(f"task {task.name}: {task.title}")

# %% [markdown]
# ## Catalog
# Values carrying a limit flag are bounds, not measurements: they are moved aside and do not
# feed the labels. Insolation is derived from L = R²(T/5772 K)⁴ and the semi-major axis where
# the archive gives none.

# %%
print(f"{len(planets)} planets around {planets['hostname'].nunique()} host systems; "
      f"insolation derived for {int(planets['pl_insol_derived'].sum())} planets")
cat.summary(planets).round(3)

# %% [markdown]
# ## The data this run trains on
# Prepared by the run's task (or reused when it exists with the same settings); its sections follow.

# %%
with Progress(f"preparing the {task.name} data") as progress:
    # refused when this run has checkpoints trained on other data: the data a run trained on is never replaced
    data = tasks.prepare_data(cfg, planets, provenance, data_dir, progress)
task.show_data(data)

# %% [markdown]
# ## Verdict

# %%
print(provenance.banner())
record_verdict(cfg.run.run_dir, "01_data_validation", data.status, data.headline, data.next_action)
if data.status == "FAIL":
    raise RuntimeError(f"data verdict: FAIL — {data.headline}")

# %% tags=["completion-marker"]
completion_marker("01_data_validation")
