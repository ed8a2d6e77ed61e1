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
# # 03 · Training
# Train the multimodal habitability model within the memory budget, surviving preemption:
# checkpoints, exact resume, progress lines, memory alerts. **Status: the training loop is not
# implemented yet (training-loop issue); no model is trained by this notebook yet.** It validates
# the training configuration so a wrong value fails here, before any heavy work.

# %% tags=["parameters"]
run_dir: str = "../outputs/notebook_defaults"  # run folder: every product of the run is written here
seed: int = 0  # global random seed (data split, init, sampling)
model_preset: str = "tiny"  # model size preset: tiny | small | seeds_full
max_steps: int = 20  # optimizer steps to run
micro_batch_size: int = 4  # samples per forward/backward pass
grad_accum_steps: int = 4  # micro-batches accumulated per optimizer step
learning_rate: float = 0.0003  # peak learning rate
precision: str = "fp32"  # fp32 | bf16-mixed | fp16-mixed | bf16
optimizer: str = "adamw"  # adamw | adamw8bit | paged_adamw8bit
activation_checkpointing: bool = False  # recompute activations per block in backward

# %%
import dataclasses

import pandas as pd

from astrobio_lib import config
from astrobio_lib.report import completion_marker, data_banner

cfg = config.from_namespace(globals())
print(data_banner(cfg.run.run_dir))
pd.DataFrame([{"key": k, "value": v} for k, v in dataclasses.asdict(cfg.train).items()]).set_index("key")

# %% [markdown]
# ## Verdict

# %%
samples_per_step = cfg.train.micro_batch_size * cfg.train.grad_accum_steps
print(f"training verdict: NOT TRAINED — loop pending. Config valid: {cfg.train.max_steps} steps x "
      f"{samples_per_step} samples/step ({cfg.train.micro_batch_size} x {cfg.train.grad_accum_steps} "
      f"accumulation), preset {cfg.model.model_preset}.")

# %% tags=["completion-marker"]
completion_marker("03_training")
