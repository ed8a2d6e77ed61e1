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
# Train the run's task — its model (only the encoders it needs) on the data notebook 01 prepared —
# within the memory budget, in a way that survives the pod: the plan is checked against the memory estimator before
# anything is allocated; checkpoints are atomic and verified (every `checkpoint_every_steps` steps
# and every `checkpoint_every_minutes` minutes, last K kept plus the best); SIGTERM (a preempted
# pod) finishes the current step and writes a checkpoint within `preempt_grace_s`; running this
# notebook again on the same run folder **resumes exactly** (model, optimizer, schedule, RNG, data
# position). One process trains in this kernel; more (`nproc` > 1) launch `torchrun` as a
# subprocess and stream its log lines here.

# %%
from typing import Optional, Union  # the parameters cell's annotations need them

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
model_preset: str = "tiny"  # model size preset: tiny | small | medium | seeds_full
gpu_name: str = "cpu"  # target device for budgets and estimates (cpu, RTX A5000, ...)
gpus_per_node: int = 1  # devices used by the run (1 on CPU)
gpu_memory_gb: float = 0.0  # memory per device in GB (0 on CPU: host RAM applies)
host_ram_gb: Optional[float] = None  # host RAM of the target machine in GB; None: this machine's
force_plan: bool = False  # run a plan the memory budget says does not fit (expect out-of-memory errors)
task: str = "gas_detection"  # what the model learns: gas_detection | habitability (one package each in astrobio_lib/tasks)
gas_train_draws: int = 8  # training items per noiseless spectrum and epoch, each with fresh noise and N drawn at use (gas-detection task)
noise_floor: str = "correlated"  # systematic noise floor of the gas-detection spectra (20 ppm per bin): white (independent bins) | correlated (half of it correlated in wavelength; astrobio_lib/data/observing.py)
max_steps: int = 600  # optimizer steps to run
micro_batch_size: Union[int, str] = 32  # samples per forward/backward pass, or auto: the largest that fits the memory budget, keeping batch_size
grad_accum_steps: int = 1  # micro-batches accumulated per optimizer step
batch_size: Optional[int] = None  # samples per optimizer step per process that micro_batch_size: auto keeps (accumulation: batch_size over the chosen micro-batch)
learning_rate: float = 0.001  # peak learning rate
precision: str = "fp32"  # fp32 | bf16-mixed | fp16-mixed | bf16
optimizer: str = "adamw"  # adamw | adamw8bit | paged_adamw8bit
activation_checkpointing: bool = False  # recompute activations per block in backward
sharding: str = "none"  # none | ddp | fsdp2
cpu_offload: str = "none"  # none | optimizer | params_optimizer (FSDP2 CPUOffloadPolicy)
llm_adapter: str = "none"  # train the LLM fully (none) or through lora / qlora adapters
llm_checkpoint: Optional[str] = None  # pretrained Llama-family checkpoint directory (Hugging Face layout): its LLM and tokenizer replace the preset's; None: from scratch
lora_rank: int = 16  # LoRA rank r of the adapters
lora_alpha: float = 32.0  # LoRA scaling alpha (the update is scaled by alpha / r)
lora_dropout: float = 0.05  # dropout on the adapters' input
lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate,up,down"  # comma-separated LLM linear layers that get adapters
max_epochs: int = 1000  # stop after this many passes over the training split
max_hours: float = 672.0  # wall-clock limit in hours, resumed time included
schedule: str = "cosine"  # learning-rate schedule after warmup: cosine | onecycle | constant
warmup_steps: int = 20  # linear warmup steps (cosine and constant schedules)
weight_decay: float = 0.01  # AdamW weight decay (not applied to norms and biases)
grad_clip: float = 1.0  # clip the global gradient norm to this value (0: off)
compile: str = "auto"  # torch.compile the repeated blocks (LLM, ViT, fusion layers): auto (on for CUDA) | on | off
attention: str = "auto"  # LLM attention: auto (flash-attn when installed, on CUDA in bf16/fp16; else SDPA) | sdpa | flash_attn | eager
val_every_steps: int = 50  # validate every N optimizer steps
early_stopping_patience: int = 20  # stop after N validations without improvement
checkpoint_every_steps: int = 100  # checkpoint every N optimizer steps
checkpoint_every_minutes: float = 120.0  # also checkpoint every T minutes
keep_checkpoints: int = 5  # keep the last K checkpoints (plus the best)
resume: str = "auto"  # auto (newest valid checkpoint) | never | a checkpoint path
log_every_steps: int = 10  # print a progress line every N optimizer steps
memory_every_steps: int = 50  # record memory statistics every N optimizer steps
memory_alert_fraction: float = 0.9  # warn when a device's peak exceeds this fraction of it
nan_patience: int = 3  # stop (after a checkpoint) after N consecutive non-finite steps
divergence_factor: float = 10.0  # warn when the loss exceeds this multiple of its running median
divergence_patience: int = 5  # ... for this many consecutive steps (then warn once per episode)
divergence_stop: bool = False  # stop (after a checkpoint) instead of only warning on divergence
checkpoint_async: bool = True  # write periodic checkpoints in a background thread (single-file format)
preempt_grace_s: float = 25.0  # seconds a SIGTERM leaves to write the final checkpoint
nproc: int = 1  # training processes; more than 1 launches torchrun
num_workers: int = 0  # data-loader worker processes
wandb_mode: str = "offline"  # Weights & Biases: online | offline | disabled (env WANDB_MODE wins)

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from astrobio_lib import config, memory, plots, tasks
from astrobio_lib.report import completion_marker, data_banner, record_verdict, start_notebook
from astrobio_lib.tracking import MetricsLog
from astrobio_lib.train.checkpoint import read_manifest
from astrobio_lib.train.launch import TrainingInterrupted, run_torchrun, write_params
from astrobio_lib.train.loop import hardware_for, plan_for, train, with_batch
from astrobio_lib.train.preemption import INTERRUPTED_EXIT
from astrobio_lib.train.verdict import training_verdict

cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "03_training")  # library logs → run.log; warnings shown as text
task = tasks.of(cfg)
run_path = Path(cfg.run.run_dir)
run_path.mkdir(parents=True, exist_ok=True)
print(data_banner(cfg.run.run_dir))
data = task.data_info(cfg, run_path / "data")  # prepared by notebook 01; raises naming the fix when absent
params_file = write_params(cfg, run_path / "train_params.yaml", data.built_with)  # the data's own settings
resuming = bool(read_manifest(run_path / "checkpoints")) and cfg.train.resume != "never"
print(f"task {task.name} ({task.title}): {cfg.train.max_steps} steps x {cfg.train.micro_batch_size} x "
      f"{cfg.train.grad_accum_steps} accumulation on {cfg.train.nproc} process(es); preset {cfg.model.model_preset}; "
      f"{cfg.train.precision}, {cfg.train.optimizer}; data: {data.description}; "
      f"{'resuming from the newest valid checkpoint' if resuming else 'starting fresh'}")

# %% [markdown]
# ## Preflight: does the plan fit?

# %%
model_cfg = tasks.model_config(cfg.flat())  # the task's model: its encoders and heads only
plan, hardware = plan_for(cfg, cfg.train.nproc), hardware_for(cfg)
if cfg.train.micro_batch_size == "auto":  # as the trainer resolves it (it logs and records the numbers it used)
    mb, accum, why = memory.auto_micro_batch(model_cfg, plan, data.text_len, cfg.train.batch_size, hardware)
    print(why)
    cfg = with_batch(cfg, mb, accum)
try:
    estimate = memory.preflight(model_cfg, plan, memory.BatchShape(cfg.train.micro_batch_size, data.text_len,
                                                                   cfg.train.grad_accum_steps), hardware)
    print(f"plan '{plan.name}' on {hardware.name}: {estimate.device_total / 1e9:.2f} GB per device, "
          f"{estimate.host_total / 1e9:.1f} GB host — fits (model: {', '.join(model_cfg.modalities)} encoders, "
          f"{estimate.parameters['total']:,} parameters)")
except memory.MemoryBudgetError as exc:
    if not cfg.hardware.force_plan:
        raise
    print(f"DOES NOT FIT, training anyway (force_plan: true): {exc}")

# %% [markdown]
# ## Train (or continue)

# %%
if cfg.train.nproc == 1:
    result = train(cfg).to_dict()
else:
    (run_path / "train_result.json").unlink(missing_ok=True)  # written by rank 0 when the ranks end
    code = run_torchrun(params_file, cfg.train.nproc)
    done = run_path / "train_result.json"
    result = json.loads(done.read_text()) if done.is_file() else None
    # torchrun's own exit code is 1 when a rank exits 75 (interrupted after its checkpoint): the ranks' record says
    if code not in (0, INTERRUPTED_EXIT) and not (result and result["stopped_because"] == "interrupted"):
        raise RuntimeError(f"torchrun exited with {code}: see the lines above and {run_path / 'run.log'}")
if result["stopped_because"] == "interrupted":
    raise TrainingInterrupted(f"training interrupted ({result['interrupted_by']}) at step {result['step']}; "
                              f"checkpoint {result['last_checkpoint']}: run the same command again to continue")
shown = {"steps": f"{result['step']} (from {result['start_step']})", "stopped because": result["stopped_because"],
         "best validation": (f"{result['best_val']:.4f} at step {result['best_step']}" if result.get("best_val") is not None
                             else "none"),
         "wall time": f"{result['elapsed_s']:.0f} s", "micro-batch x accumulation":
         f"{result['micro_batch_size']} x {result['grad_accum_steps']}",
         "checkpoints": ", ".join(Path(c).name for c in result["checkpoints"]) or "none",
         "resumed from": Path(result["resumed_from"]).name if result["resumed_from"] else "not resumed",
         "non-finite steps skipped": result["skipped_steps"],
         "checkpoint stall": f"{result['checkpoint_stall_s']:.1f} s"}
pd.DataFrame({"value": shown})

# %% [markdown]
# ## Curves (from `metrics.jsonl`)

# %%
records = MetricsLog(run_path / "metrics.jsonl").read()
print("progress (every line of it is in run.log):")
display(plots.progress_table(records))
fig, axes = plt.subplots(2, 2, figsize=(13, 8))
plots.training_curves(axes.ravel(), records, task.headline_keys, task.headline_label)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict

# %%
status, finding, action = training_verdict(result, records)
record_verdict(cfg.run.run_dir, "03_training", status, finding, action)
if not result["checkpoints"]:
    raise RuntimeError("no checkpoint was written")
if result["stopped_because"] == "non_finite":
    raise RuntimeError("training stopped on non-finite losses: lower learning_rate or inspect the data report")

# %% tags=["completion-marker"]
completion_marker("03_training")
