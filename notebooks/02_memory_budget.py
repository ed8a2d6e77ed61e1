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
# # 02 · Memory budget
# Does the plan fit — per GPU and in host RAM — and how long will a step take? The budget is of the
# model the run's **task** builds (its encoders and heads only: a task without text builds no LLM). Every
# figure comes from one estimator (`astrobio_lib.memory`): parameters, gradients, optimizer states
# (8-bit AdamW included), activations per component (with and without checkpointing), logits,
# communication buffers for DDP / FSDP2, CPU offload, LoRA / QLoRA for a model with an LLM, and stated
# allowances for the CUDA context and the allocator. The estimate is checked here against a
# measured training step on this machine, and `benchmarks/memory_estimator.py` checks 14
# configurations. Memory is **per device**: two 24 GB GPUs are not one 48 GB GPU.

# %%
from typing import Optional, Union  # the parameters cell's annotations need them

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
task: str = "gas_detection"  # what the model learns: gas_detection | habitability (one package each in astrobio_lib/tasks)
model_preset: str = "tiny"  # model size preset: tiny | small | medium | seeds_full
text_max_len: int = 256  # tokens per planet description (bytes, or the llm_checkpoint tokenizer's tokens)
gpu_name: str = "cpu"  # target device for budgets and estimates (cpu, RTX A5000, ...)
gpus_per_node: int = 1  # devices used by the run (1 on CPU)
gpu_memory_gb: float = 0.0  # memory per device in GB (0 on CPU: host RAM applies)
host_ram_gb: Optional[float] = None  # host RAM of the target machine in GB; None: this machine's
mfu: float = 0.35  # assumed model FLOPs utilisation for time estimates
max_steps: int = 600  # optimizer steps to run
micro_batch_size: Union[int, str] = 32  # samples per forward/backward pass, or auto: the largest that fits the memory budget, keeping batch_size
grad_accum_steps: int = 1  # micro-batches accumulated per optimizer step
batch_size: Optional[int] = None  # samples per optimizer step per process that micro_batch_size: auto keeps (accumulation: batch_size over the chosen micro-batch)
precision: str = "fp32"  # fp32 | bf16-mixed | fp16-mixed | bf16
optimizer: str = "adamw"  # adamw | adamw8bit | paged_adamw8bit
activation_checkpointing: bool = False  # recompute activations per block in backward
attention: str = "auto"  # LLM attention: auto (flash-attn when installed, on CUDA in bf16/fp16; else SDPA) | sdpa | flash_attn | eager
sharding: str = "none"  # none | ddp | fsdp2
cpu_offload: str = "none"  # none | optimizer | params_optimizer (FSDP2 CPUOffloadPolicy)
llm_adapter: str = "none"  # train the LLM fully (none) or through lora / qlora adapters
llm_checkpoint: Optional[str] = None  # pretrained Llama-family checkpoint directory (Hugging Face layout): its LLM and tokenizer replace the preset's; None: from scratch
lora_rank: int = 16  # LoRA rank r of the adapters
lora_alpha: float = 32.0  # LoRA scaling alpha (the update is scaled by alpha / r)
lora_dropout: float = 0.05  # dropout on the adapters' input
lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate,up,down"  # comma-separated LLM linear layers that get adapters
force_plan: bool = False  # run a plan the memory budget says does not fit (expect out-of-memory errors)

# %%
import dataclasses
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from astrobio_lib import config, memory, plots, tasks
from astrobio_lib.models import pretrained
from astrobio_lib.models.presets import count_parameters, get_preset
from astrobio_lib.report import completion_marker, data_banner, record_verdict, section, show, start_notebook

cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "02_memory_budget")  # library logs → run.log; warnings shown as text
pd.set_option("display.max_colwidth", None)  # the "why" columns are sentences: never cut them
print(data_banner(cfg.run.run_dir))
task = tasks.of(cfg)
run_path = Path(cfg.run.run_dir)
run_path.mkdir(parents=True, exist_ok=True)
hw = memory.hardware_from(cfg.hardware.gpu_name, cfg.hardware.gpus_per_node, cfg.hardware.gpu_memory_gb,
                          cfg.hardware.host_ram_gb)
if cfg.model.llm_checkpoint and not (Path(cfg.model.llm_checkpoint) / "config.json").is_file():
    # the pod's checkpoint is not on this machine: plan with its published architecture, and say so
    model_cfg = task.model(get_preset(cfg.model.model_preset, activation_checkpointing=cfg.train.activation_checkpointing))
    model_cfg.llm = pretrained.published_llm_config(cfg.model.llm_checkpoint,
                                                    activation_checkpointing=cfg.train.activation_checkpointing)
    if model_cfg.llm is None:
        raise FileNotFoundError(f"llm_checkpoint {cfg.model.llm_checkpoint} has no config.json here and is not a "
                                f"published architecture astrobio knows ({', '.join(pretrained.PUBLISHED_CONFIGS)})")
    print(f"LLM: {cfg.model.llm_checkpoint} is not on this machine: budgeting with the published config.json of "
          f"{Path(cfg.model.llm_checkpoint).name} (on the pod the checkpoint's own file is read)")
else:
    model_cfg = tasks.model_config(cfg.flat())
    if cfg.model.llm_checkpoint:
        print(f"LLM: {cfg.model.llm_checkpoint} ({model_cfg.llm.n_layers} layers, hidden {model_cfg.llm.hidden})")
has_llm = model_cfg.has("text")
seq_len = cfg.data.text_max_len if has_llm else 0  # tokens per sample: none without text
plan = memory.Plan(precision=cfg.train.precision, optimizer=cfg.train.optimizer,
                   activation_checkpointing=cfg.train.activation_checkpointing, sharding=cfg.train.sharding,
                   world_size=cfg.hardware.gpus_per_node, cpu_offload=cfg.train.cpu_offload,
                   llm_adapter=cfg.train.llm_adapter, lora_rank=cfg.train.lora_rank, lora_dropout=cfg.train.lora_dropout,
                   attention=model_cfg.llm.attention)
if cfg.train.micro_batch_size == "auto":  # the trainer resolves it the same way (03_training logs it)
    mb, accum, why = memory.auto_micro_batch(model_cfg, plan, seq_len, cfg.train.batch_size, hw)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=mb, grad_accum_steps=accum))
    print(why)
batch = memory.BatchShape(cfg.train.micro_batch_size, seq_len, cfg.train.grad_accum_steps)
print(f"task {task.name}: the model encodes {', '.join(model_cfg.modalities)}"
      + ("" if has_llm else " (no LLM is built)") + f" · target: {hw.name}, host RAM {hw.host_ram_bytes / 1e9:.0f} GB · "
      f"preset {cfg.model.model_preset} · plan: {plan.name} · micro-batch {batch.micro_batch_size}"
      + (f" x {batch.seq_len} tokens" if has_llm else "") + f" x {batch.grad_accum_steps} accumulation")

# %% [markdown]
# ## Devices (dense bf16/fp16 tensor peak, from data sheets)

# %%
pd.DataFrame([{"device": d.name, "memory_GB": d.memory_bytes / 1e9, "peak_TFLOP/s": d.peak_flops_bf16 / 1e12,
               "bandwidth_GB/s": d.memory_bandwidth / 1e9, "source": d.source} for d in memory.DEVICES.values()])

# %% [markdown]
# ## Parameters (meta device, no weights allocated)

# %%
counts = {f"this run ({task.name}, {cfg.model.model_preset}" + (" + checkpoint LLM)" if cfg.model.llm_checkpoint else ")"):
          count_parameters(model_cfg)}
if has_llm:  # the seeds' ~17B model beside it: the LLM plans' context
    counts["seeds_full"] = count_parameters(get_preset("seeds_full"))
pd.DataFrame(counts).fillna(0).astype(int).rename_axis("component").map(lambda n: f"{n:,}")

# %% [markdown]
# ## The chosen plan

# %%
chosen = memory.estimate(model_cfg, plan, batch, hw)
reasons = memory.check_fit(chosen, hw)
timing = memory.time_per_step(chosen, hw, cfg.hardware.mfu) if hw.device else None
# GB live per device at each moment of a step where the peak can fall; the largest column is the peak
table = (pd.DataFrame({phase: {k: v / 1e9 for k, v in terms.items()} for phase, terms in chosen.phases.items()})
         .fillna(0.0).round(3))
table.loc["total (allocated)"] = table.sum()
table = table.rename(columns={chosen.peak_phase: f"{chosen.peak_phase} (PEAK)"})
term, value, shrink = chosen.dominant()
print(f"peak of a step: {chosen.peak_allocated / 1e9:.2f} GB allocated at '{chosen.peak_phase}'"
      + (f", {chosen.peak_reserved / 1e9:.2f} GB reserved (+{memory.FRAGMENTATION:.0%} fragmentation allowance), "
         f"{chosen.device_total / 1e9:.2f} GB with the CUDA context" if hw.device else " (host memory on CPU)")
      + f"; largest term: {term} {value / 1e9:.2f} GB — shrink it with {shrink}")
print(f"per device: {chosen.device_total / 1e9:.2f} GB; host: {chosen.host_total / 1e9:.1f} GB "
      f"({', '.join(f'{k} {v / 1e9:.1f}' for k, v in chosen.host.items())}); "
      + ("FITS" if not reasons else "DOES NOT FIT: " + "; ".join(reasons)))
if timing:
    print(f"step: {timing.step_s:.2f} s (compute {timing.compute_s:.2f}, PCIe {timing.pcie_s:.2f}, host optimizer "
          f"{timing.host_optimizer_s:.2f}) at MFU {cfg.hardware.mfu}; {cfg.train.max_steps} steps = "
          f"{cfg.train.max_steps * timing.step_s / 3600:.1f} h")
table

# %% [markdown]
# ## Every plan for this model on this hardware
# Fitting plans the trainer can run first, fastest first on a GPU (smallest first on CPU, where no
# step time is estimated; each device <= 90% of its memory, host <= 85% of RAM); then plans that fit
# but are not runnable with this configuration (LoRA/QLoRA without an llm_checkpoint — considered only
# for a model with an LLM); then the rejected ones with the reason.

# %%
verdicts = memory.plans(model_cfg, hw, batch, cfg.hardware.mfu, has_llm_checkpoint=bool(cfg.model.llm_checkpoint))
plan_table = pd.DataFrame([v.row(hw) for v in verdicts])
print(f"{int(plan_table['fits'].sum())} of {len(plan_table)} plans fit {hw.name}; "
      f"{int((plan_table['fits'] & plan_table['runnable']).sum())} of those the trainer can run today")
plan_table

# %%
shown = [v.estimate for v in verdicts[:12]]
fig, ax = plt.subplots(figsize=(11, 0.45 * len(shown) + 1.5))
plots.memory_breakdown(ax, memory.breakdown_table(shown),
                       memory.DEVICE_LIMIT * hw.device.memory_bytes / 1e9 if hw.device else None,
                       title=f"{task.name} ({cfg.model.model_preset}) on {hw.name}: memory per device (first 12 plans)")
plt.tight_layout()
plt.show()

# %%
bound = None
if has_llm:  # the seeds' 17B plan is about an LLM: shown for a model with one
    section("The seeds' figures beside ours",
            "The design documents planned the ~17B model on 2x RTX A5000 with bf16, 8-bit AdamW, checkpointing, FSDP "
            "with CPU offload, micro-batch 1 x 32 accumulation of 512 tokens, and concluded \"~54 GB fits in 48 GB\".")
    seeds_cfg = get_preset("seeds_full", activation_checkpointing=True)
    a5000x2 = memory.hardware_from("RTX A5000", 2, 24.0, cfg.hardware.host_ram_gb or 64.0)
    seeds_est = memory.estimate(seeds_cfg, memory.SEEDS_PLAN, memory.SEEDS_BATCH, a5000x2)
    seeds_time = memory.time_per_step(seeds_est, a5000x2, cfg.hardware.mfu)
    no_offload = memory.estimate(seeds_cfg, memory.Plan(precision="bf16-mixed", optimizer="adamw8bit",
                                                        activation_checkpointing=True, sharding="fsdp2", world_size=2),
                                 memory.SEEDS_BATCH, a5000x2)
    states_total = sum(no_offload.device[k] for k in ("parameters", "gradients", "optimizer")) * 2
    show(pd.DataFrame([
        {"item": "memory needed", "seeds": "~54 GB (total)",
         "ours": f"{states_total / 1e9:.0f} GB of states alone (weights {4}, grads {4}, 8-bit AdamW ~2 B/param)",
         "why": "the seeds drop the fp32 master weights (autocast keeps fp32 weights) and fp32 gradients"},
        {"item": "compared against", "seeds": "48 GB (2 x 24 GB)",
         "ours": f"24 GB per device; FSDP2 shards states: {no_offload.device_total / 1e9:.1f} GB per device without offload",
         "why": "GPU memory does not pool: each device must hold its shard, its activations and buffers"},
        {"item": "with CPU offload (seeds' plan)", "seeds": "fits",
         "ours": f"{seeds_est.device_total / 1e9:.1f} GB per device, but {seeds_est.host_total / 1e9:.0f} GB of host RAM",
         "why": "offload moves the states to host RAM: the pod needs that much RAM, which 2x A5000 pods rarely have"},
        {"item": "alert threshold", "seeds": "45 GB", "ours": f"{0.9 * 24:.1f} GB per device",
         "why": "the seeds' 45 GB is a sum over two GPUs"},
        {"item": "step time", "seeds": "not stated",
         "ours": f"{seeds_time.step_s:.0f} s/step (compute {seeds_time.compute_s:.0f} s, PCIe {seeds_time.pcie_s:.0f} s)",
         "why": "offloading all parameters crosses PCIe twice per micro-batch: 32 times per step"},
    ]))
    n_total = counts["seeds_full"]["total"]
    tokens = memory.SEEDS_BATCH.micro_batch_size * memory.SEEDS_BATCH.grad_accum_steps * memory.SEEDS_BATCH.seq_len
    bound = memory.transformer_upper_bound_steps_per_s(n_total, tokens, 2, memory.DEVICES["RTX A5000"].peak_flops_bf16)
    bound_ckpt = memory.transformer_upper_bound_steps_per_s(n_total, tokens, 2, memory.DEVICES["RTX A5000"].peak_flops_bf16,
                                                            True)
    print(f"physical upper bound for the seeds' target ({memory.SEEDS_BATCH.grad_accum_steps} x "
          f"{memory.SEEDS_BATCH.seq_len} tokens per step, {n_total / 1e9:.2f}B parameters, 2 x 111 TFLOP/s): "
          f"{bound:.3f} steps/s ({1 / bound:.1f} s/step) at 100% utilisation; {bound_ckpt:.3f} steps/s with "
          f"recomputation. Any target above this is physically impossible on these GPUs.")

# %% [markdown]
# ## Estimate vs measurement on this machine
# One real training step per row (fp32, CPU): exact state bytes plus the bytes autograd saves.

# %%
import torch

from astrobio_lib.inference import complete_items
from astrobio_lib.models.fusion import build_model

rows, full = [], []
try:
    task_data = task.open_data(cfg, run_path / "data")
    full = complete_items(task_data.train, task_data.collate, 16)  # samples that carry every modality the model uses
except tasks.DataNotBuilt as exc:
    print(exc)
for preset, ckpt, mb in (("tiny", False, 2), ("tiny", True, 4), ("small", True, 2)):
    if not full:
        break
    print(f"measuring one real training step: preset {preset}, checkpointing {ckpt}, micro-batch {mb} …", flush=True)
    mcfg = task.model(get_preset(preset, activation_checkpointing=ckpt))
    torch.manual_seed(0)
    b = task_data.collate((full * mb)[:mb])
    if has_llm:  # the dataset's texts may exceed this preset's context
        seq = min(b["text_ids"].shape[1], mcfg.llm.max_seq_len)
        b["text_ids"], b["text_mask"] = b["text_ids"][:, :seq], b["text_mask"][:, :seq]
    mplan = memory.Plan(precision="fp32", optimizer="adamw", activation_checkpointing=ckpt)
    meas = memory.measure(build_model(mcfg, seed=0), b, mplan)
    est = memory.estimate(mcfg, mplan, memory.shape_of(b, mcfg))
    rows.append({"preset": preset, "checkpointing": ckpt, "micro_batch": mb, "estimate_MB": est.measured_comparable / 1e6,
                 "measured_MB": meas.comparable / 1e6, "error_%": 100 * (est.measured_comparable / meas.comparable - 1)})
if full and cfg.train.llm_adapter != "none" and (Path(cfg.model.llm_checkpoint) / "config.json").is_file():
    # the run's own adapter model (pretrained base + LoRA/QLoRA), one real step on this machine
    print(f"measuring one real training step: {cfg.train.llm_adapter} on {cfg.model.llm_checkpoint} …", flush=True)
    mb = cfg.train.micro_batch_size
    flat = {**cfg.flat(), "precision": "fp32" if cfg.train.precision == "fp16-mixed" else cfg.train.precision}
    amodel = tasks.build_model(flat)
    b = task_data.collate((full * mb)[:mb])
    mplan = memory.Plan(precision=flat["precision"], optimizer="adamw", activation_checkpointing=cfg.train.activation_checkpointing,
                        llm_adapter=cfg.train.llm_adapter, lora_rank=cfg.train.lora_rank, lora_dropout=cfg.train.lora_dropout)
    meas = memory.measure(amodel, b, mplan)
    est = memory.estimate(model_cfg, mplan, memory.shape_of(b, model_cfg))
    rows.append({"preset": f"{cfg.model.model_preset} + {cfg.train.llm_adapter}", "checkpointing": cfg.train.activation_checkpointing,
                 "micro_batch": mb, "estimate_MB": est.measured_comparable / 1e6, "measured_MB": meas.comparable / 1e6,
                 "error_%": 100 * (est.measured_comparable / meas.comparable - 1)})
measured = pd.DataFrame(rows).round(2)
print("no data in this run folder: run 01_data_validation first" if measured.empty else
      f"worst error {measured['error_%'].abs().max():.2f}%")
measured

# %% [markdown]
# ## The probe: this run's model, measured on this machine
# `memory.probe` trains depth-reduced copies of the run's model (each repeated stack at 1 and 2
# layers, same widths) for two real steps and extrapolates every measured quantity linearly in depth.
# On a GPU it measures the allocator's peaks (allocated, reserved); on a CPU the state and saved-activation
# bytes. It runs only when this machine is the configured one; where the full model fits, one real step
# of it is measured beside the probe and the estimate.

# %%
same_machine, machine_note = memory.this_machine(hw)
print(machine_note)
probe_table = pd.DataFrame()
if not full:
    print("no data in this run folder: run 01_data_validation first")
elif not same_machine:
    print("probe skipped: the analytical estimate above is the only figure for the configured GPU")
elif memory.not_runnable(plan, bool(cfg.model.llm_checkpoint)) or plan.llm_adapter != "none" or plan.sharding == "fsdp2":
    print(f"probe skipped: plan '{plan.name}' builds adapters or shards the model; the probe builds the plain model")
else:
    mb = cfg.train.micro_batch_size
    b = task_data.collate((full * mb)[:mb])
    shape = dataclasses.replace(memory.shape_of(b, model_cfg), grad_accum_steps=cfg.train.grad_accum_steps)
    one_device = dataclasses.replace(plan, sharding="none", world_size=1)  # the probe measures one device
    fits_whole = chosen.device_total < 0.8 * (hw.device.memory_bytes if hw.device else hw.host_ram_bytes)
    print(f"probing plan '{one_device.name}', micro-batch {mb} x {shape.seq_len} tokens …", flush=True)
    probe_table = memory.compare_on_this_machine(model_cfg, one_device, b, shape, hw, full_step=fits_whole)
probe_table.round(4)

# %% [markdown]
# ## Verdict

# %%
fitting = plan_table[plan_table["fits"] & plan_table["runnable"]]
recommendation = memory.recommend(verdicts, plan, hw)
verdict = {
    "task": task.name, "modalities": list(model_cfg.modalities),
    "params_plan": plan.name, "hardware": hw.name, "fits": not reasons, "reasons": reasons,
    "per_device_GB": chosen.device_total / 1e9, "host_GB": chosen.host_total / 1e9,
    "step_s": timing.step_s if timing else None, "fitting_plans": int(len(fitting)),
    "best_plan": fitting.iloc[0]["plan"] if len(fitting) else None, "recommendation": recommendation,
    "seeds_upper_bound_steps_per_s": bound,
}
(run_path / "memory_budget.json").write_text(json.dumps({
    "verdict": verdict, "chosen": chosen.to_dict(), "plans": plan_table.to_dict("records"),
    "seeds": {"estimate": seeds_est.to_dict(), "time": seeds_time.to_dict()} if has_llm else None,
    "measured_vs_estimated": measured.to_dict("records"), "probe": probe_table.to_dict("records"),
    "probe_note": machine_note}, indent=2, default=str))
print(f"memory verdict ({task.name}): plan '{plan.name}' on {hw.name} "
      + (f"FITS ({chosen.device_total / 1e9:.2f} GB per device)" if not reasons else f"DOES NOT FIT ({'; '.join(reasons)})")
      + f"; {len(fitting)} of {len(plan_table)} plans fit and are runnable"
      + (f". Seeds' target: at most {bound:.3f} steps/s on 2x RTX A5000." if bound else "."))
print("recommendation:", recommendation)
record_verdict(cfg.run.run_dir, "02_memory_budget", "FAIL" if reasons else "PASS",
               f"plan '{plan.name}' on {hw.name}: "
               + (f"{chosen.device_total / 1e9:.2f} GB per device, {chosen.host_total / 1e9:.1f} GB host — fits"
                  if not reasons else "does NOT fit (" + "; ".join(reasons) + ")")
               + f"; {len(fitting)} of {len(plan_table)} runnable plans fit",
               "" if not reasons else (f"choose a plan that fits from the table above (e.g. {fitting.iloc[0]['plan']}: "
                                       f"set precision / optimizer / sharding as it says)" if len(fitting) else
                                       "no plan fits this hardware: a smaller model_preset or more GPUs (gpus_per_node)"))
if reasons and not cfg.hardware.force_plan:
    # stop the pipeline here: training would only fail later (or run out of memory in hour one)
    raise memory.MemoryBudgetError(f"plan '{plan.name}' does not fit {hw.name}: {'; '.join(reasons)}. Choose a plan "
                                   f"from the table above, or set force_plan: true to train anyway")

# %% tags=["completion-marker"]
completion_marker("02_memory_budget")
