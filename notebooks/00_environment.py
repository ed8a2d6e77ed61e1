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
# # 00 · Environment
# What can this machine run? Python, CPU and RAM, free disk at the run folder, the torch build,
# every GPU (memory, compute capability, bf16), torch.distributed backends, bitsandbytes 8-bit
# optimizers, flash-attn, PyG, Weights & Biases (mode, and whether a key is present — never its
# value), papermill and jupytext. It ends with a verdict per item and the precision and attention
# backend to use on this hardware. The same report: `python -m astrobio_lib.environment`.

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
min_free_disk_gb: float = 1.0  # fail when the run folder's disk has less free space (GB)
require_gpu: bool = False  # fail instead of warn when no CUDA GPU is found

# %%
from pathlib import Path

from astrobio_lib import config, environment
from astrobio_lib.report import completion_marker, record_verdict, start_notebook

cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "00_environment")  # library logs → run.log; warnings shown as text
run_path = Path(cfg.run.run_dir)
run_path.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Checks

# %%
report = environment.collect(run_path, cfg.environment.min_free_disk_gb, cfg.environment.require_gpu)
print(report.to_text())
environment.write_json(report, run_path)
print("\nwrote environment.json in the run folder")

# %% [markdown]
# ## GPUs

# %%
import pandas as pd

pd.DataFrame(report.facts["gpus"]) if report.facts["gpus"] else print("No CUDA GPU visible.")

# %% [markdown]
# ## Verdict
# `fail` on any item stops the pipeline here; `warn` items are shown above with the reason.

# %%
failed = [c.item for c in report.checks if c.status == "fail"]
warned = [c.item for c in report.checks if c.status == "warn"]
fixes = "; ".join(f"{c.item}: {c.detail}" for c in report.checks if c.status != "ok")
record_verdict(cfg.run.run_dir, "00_environment", {"ok": "PASS"}.get(report.verdict, report.verdict).upper(),
               f"this machine can run the pipeline with precision {report.recommended_precision} and attention "
               f"{report.recommended_attention}" + (f"; failed: {', '.join(failed)}" if failed else "")
               + (f"; warnings: {', '.join(warned)}" if warned else ""),
               f"see the checks of 00_environment — {fixes}" if fixes else "")
if failed:
    raise RuntimeError(f"environment check failed for: {', '.join(failed)} — see the table above")

# %% tags=["completion-marker"]
completion_marker("00_environment")
