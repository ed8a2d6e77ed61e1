"""Memory budget: estimate, measure, and search training plans; FLOPs and time per step.

One estimator serves the memory-budget notebook, the training preflight and the tests. The package
keeps the pieces apart, each a file a reader can hold in their head:

- :mod:`.hardware` — the device catalogue (data sheets), the machine a plan targets, host RAM;
  imports nothing from the package.
- :mod:`.formulas` — bytes per parameter, activations per component as autograd stores them,
  parameter inventories on the meta device, FLOPs, input bytes; only for the components the model
  builds (a task chooses its modalities).
- :mod:`.estimate` — the peak of a training step, term by term at the moments it can fall; the fit
  check; the time per step.
- :mod:`.plans` — every plan relevant to the model and machine, the recommendation, the preflight
  refusal, ``micro_batch_size: auto``.
- :mod:`.probe` — a measured step (:func:`measure`) and the depth-reduced probe (:func:`probe`).
- :mod:`.presentation` — tables for notebook 02.

``from astrobio_lib import memory; memory.estimate(...)`` keeps working: the public names are
re-exported here. Nothing here imports from :mod:`astrobio_lib.train`.
"""

from astrobio_lib.memory.estimate import (
    SHRINK,
    Estimate,
    MemoryBudgetError,
    TimeEstimate,
    check_fit,
    estimate,
    step_phases,
    time_per_step,
)
from astrobio_lib.memory.formulas import (
    _LLM_PROJECTIONS,
    ADAPTERS,
    CUDA_CONTEXT_BYTES,
    DEVICE_LIMIT,
    FRAGMENTATION,
    HOST_LIMIT,
    HOST_MEMORY_BANDWIDTH,
    HOST_PROCESS_BYTES,
    OFFLOADS,
    OPTIMIZERS,
    PCIE_BYTES_PER_S,
    PRECISIONS,
    SEEDS_STATED_PARAMETERS,
    SHARDINGS,
    BatchShape,
    Plan,
    _llm_activation_elements,
    _lora_parameters,
    activation_bytes,
    attention_kernel,
    cast_parameters,
    component_counts,
    flops_per_sample,
    input_bytes,
    korthikanti_layer_bytes,
    mfu,
    optimizer_state_bytes_per_param,
    parameter_inventory,
    state_bytes_per_param,
    transformer_upper_bound_steps_per_s,
)
from astrobio_lib.memory.hardware import (
    DEVICES,
    GB,
    GIB,
    Device,
    Hardware,
    device_for_name,
    hardware_from,
    memory_bytes,
)
from astrobio_lib.memory.plans import (
    SEEDS_BATCH,
    SEEDS_PLAN,
    PlanVerdict,
    auto_micro_batch,
    micro_batch_candidates,
    not_runnable,
    plans,
    preflight,
    recommend,
)
from astrobio_lib.memory.presentation import breakdown_table
from astrobio_lib.memory.probe import (
    PROBE_STACKS,
    Measurement,
    ProbeResult,
    compare_on_this_machine,
    depth_reduced,
    measure,
    measure_step_peak,
    probe,
    probe_stacks,
    shape_of,
    this_machine,
)

__all__ = [
    "ADAPTERS", "CUDA_CONTEXT_BYTES", "DEVICES", "DEVICE_LIMIT", "FRAGMENTATION", "GB", "GIB", "HOST_LIMIT",
    "HOST_MEMORY_BANDWIDTH", "HOST_PROCESS_BYTES", "OFFLOADS", "OPTIMIZERS", "PCIE_BYTES_PER_S", "PRECISIONS",
    "PROBE_STACKS", "SEEDS_BATCH", "SEEDS_PLAN", "SEEDS_STATED_PARAMETERS", "SHARDINGS", "SHRINK", "BatchShape",
    "Device", "Estimate", "Hardware", "Measurement", "MemoryBudgetError", "Plan", "PlanVerdict", "ProbeResult",
    "TimeEstimate", "activation_bytes", "attention_kernel", "auto_micro_batch", "breakdown_table", "cast_parameters",
    "check_fit", "compare_on_this_machine", "component_counts", "depth_reduced", "device_for_name", "estimate",
    "flops_per_sample", "hardware_from", "input_bytes", "korthikanti_layer_bytes", "measure", "measure_step_peak",
    "memory_bytes", "mfu", "micro_batch_candidates", "not_runnable", "optimizer_state_bytes_per_param",
    "parameter_inventory", "plans", "preflight", "probe", "probe_stacks", "recommend", "shape_of", "state_bytes_per_param",
    "step_phases", "this_machine", "time_per_step", "transformer_upper_bound_steps_per_s",
    "_LLM_PROJECTIONS", "_llm_activation_elements", "_lora_parameters",
]
