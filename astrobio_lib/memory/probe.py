"""Measurement: one real training step measured by the estimator's categories (:func:`measure`), and
the probe — the device itself answering "does it fit" with real steps of depth-reduced copies of the
model, extrapolated linearly in depth (:func:`probe`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from astrobio_lib.memory.estimate import estimate
from astrobio_lib.memory.formulas import BatchShape, Plan
from astrobio_lib.memory.hardware import GB, Hardware, device_for_name


@dataclass
class Measurement:
    device: dict[str, float]
    activations_by_component: dict[str, float]

    @property
    def comparable(self) -> float:
        return sum(self.device[k] for k in ("parameters", "gradients", "optimizer", "master_fp32", "activations"))


def measure(model, batch: dict[str, Any], plan: Plan) -> Measurement:
    """Runs one real training step and returns the measured bytes by the estimator's categories.

    CPU: parameters, gradients and optimizer state are the exact bytes of their tensors (after
    one optimizer step); activations are the bytes of every storage autograd saves during the
    forward pass (``saved_tensors_hooks``; each storage counted once; parameters and buffers
    excluded), attributed to the top-level component that saved them. On CUDA it also reports
    ``max_memory_allocated`` and ``max_memory_reserved``.
    """
    import torch

    from astrobio_lib.optim import build_optimizer
    from astrobio_lib.precision import autocast_for

    device = next(model.parameters()).device
    opt = build_optimizer(model, plan.optimizer, lr=1e-4)
    static = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    from astrobio_lib.models.fusion import ENCODER_COMPONENTS as component

    stack: list[str] = []
    handles = []
    for name, mod in model.named_children():
        comp = component.get(name, "fusion_and_heads")
        handles.append(mod.register_forward_pre_hook(lambda m, i, c=comp: stack.append(c)))
        handles.append(mod.register_forward_hook(lambda m, i, o: (stack.pop(), None)[1]))
    seen: dict[int, tuple[int, str]] = {}

    def pack(t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in static and ptr not in seen:
            seen[ptr] = (st.nbytes(), stack[-1] if stack else "fusion_and_heads")
        return t

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = autocast_for("bf16-mixed" if plan.precision == "bf16-mixed" else "fp32", device)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            out = model(batch)
        out["loss"].backward()
        opt.step()
    finally:
        for h in handles:
            h.remove()
    acts: dict[str, float] = {}
    for nbytes, comp in seen.values():
        acts[comp] = acts.get(comp, 0) + nbytes
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    opt_bytes = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                opt_bytes += v.numel() * v.element_size()
    result = {"parameters": param_bytes, "gradients": grad_bytes, "optimizer": opt_bytes, "master_fp32": 0.0,
              "activations": sum(acts.values())}
    if device.type == "cuda":
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        result["max_memory_reserved"] = torch.cuda.max_memory_reserved(device)
    model.zero_grad(set_to_none=True)
    return Measurement(result, acts)


def shape_of(batch: dict[str, Any], cfg) -> BatchShape:
    """The :class:`BatchShape` of a real micro-batch of the model ``cfg`` (its size, text length and
    graph size per sample), so an estimate and a measurement of that batch are of the same thing."""
    b = int(batch["catalog"].shape[0])
    graph = batch.get("graph") if cfg.has("graph") else None
    nodes = graph.num_nodes // b if graph is not None else BatchShape.graph_nodes
    edges = graph.edge_index.shape[1] // b if graph is not None else BatchShape.graph_edges
    return BatchShape(b, int(batch["text_ids"].shape[1]) if cfg.has("text") else 0, 1, nodes, edges)


# --------------------------------------------------------------------------- measured probe

PROBE_STACKS = {"llm": "llm", "datacube_vit": "datacube", "graph": "graph", "fusion": "fusion"}
STACK_MODALITY = {"llm": "text", "datacube_vit": "climate", "graph": "graph"}  # fusion: always built


def probe_stacks(cfg) -> dict[str, int]:
    """The repeated stacks the model builds and their full depths."""
    return {k: getattr(cfg, attr).n_layers for k, attr in PROBE_STACKS.items()
            if k not in STACK_MODALITY or cfg.has(STACK_MODALITY[k])}


def depth_reduced(cfg, depths: dict[str, int]):
    """Returns a copy of ``cfg`` with the named repeated stacks (:data:`PROBE_STACKS`: LLM decoder
    blocks, datacube ViT layers, GATv2 layers, fusion layers) at the given depths, widths unchanged."""
    out = dataclasses.replace(cfg)
    for stack, depth in depths.items():
        attr = PROBE_STACKS[stack]
        setattr(out, attr, dataclasses.replace(getattr(cfg, attr), n_layers=int(depth)))
    return out


@dataclass
class ProbeResult:
    """A measured memory probe: per-run measurements of depth-reduced copies and their linear
    extrapolation in depth to the full model (bytes)."""

    device: str
    full_depths: dict[str, int]
    runs: list[dict[str, Any]]  # {"depths": {...}, quantity: bytes, ...}
    extrapolated: dict[str, float]

    @property
    def peak_allocated(self) -> Optional[float]:
        """CUDA: the larger of the extrapolated forward+backward and optimizer-step peaks."""
        e = self.extrapolated
        return max(e["forward_backward_peak"], e["optimizer_step_peak"]) if "forward_backward_peak" in e else None

    @property
    def peak_reserved(self) -> Optional[float]:
        return self.extrapolated.get("peak_reserved")

    @property
    def comparable(self) -> float:
        """States + stored activations (what :func:`measure` observes on CPU), extrapolated."""
        return sum(self.extrapolated.get(k, 0.0) for k in ("parameters", "gradients", "optimizer", "activations"))

    def table(self) -> "pd.DataFrame":  # noqa: F821
        import pandas as pd

        rows = [{**{f"depth {k}": v for k, v in r["depths"].items()},
                 **{k: v / GB for k, v in r.items() if k != "depths"}} for r in self.runs]
        rows.append({**{f"depth {k}": v for k, v in self.full_depths.items()},
                     **{k: v / GB for k, v in self.extrapolated.items()}, "extrapolated": True})
        return pd.DataFrame(rows)


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def _probe_cuda_run(model, batch, plan: Plan, steps: int, grad_accum_steps: int, base_alloc: int,
                    base_reserved: int) -> dict[str, float]:
    import torch

    from astrobio_lib.optim import build_optimizer
    from astrobio_lib.precision import autocast_for

    device = next(model.parameters()).device
    opt = build_optimizer(model, plan.optimizer, lr=1e-4)
    fb = st = reserved = 0
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(grad_accum_steps):
            with autocast_for(plan.precision, device):
                out = model(batch)
            out["loss"].backward()
        torch.cuda.synchronize(device)
        fb = torch.cuda.max_memory_allocated(device) - base_alloc
        reserved = max(reserved, torch.cuda.max_memory_reserved(device) - base_reserved)
        torch.cuda.reset_peak_memory_stats(device)
        opt.step()
        torch.cuda.synchronize(device)
        st = torch.cuda.max_memory_allocated(device) - base_alloc
        reserved = max(reserved, torch.cuda.max_memory_reserved(device) - base_reserved)
    persistent = torch.cuda.memory_allocated(device) - base_alloc  # weights, gradients, state
    del opt
    return {"forward_backward_peak": float(fb), "optimizer_step_peak": float(st), "peak_reserved": float(reserved),
            "persistent_after_step": float(persistent)}


def probe(cfg, plan: Plan, batch: dict[str, Any], device: Any = None, steps: int = 2, grad_accum_steps: int = 1,
          seed: int = 0) -> ProbeResult:
    """Measures the memory of training ``cfg`` with ``plan`` on this machine without building the
    full model: runs ``steps`` real training steps (forward, backward, optimizer step) of
    depth-reduced copies — every repeated stack at depth 1, then each stack in turn at depth 2,
    widths unchanged — and extrapolates every measured quantity linearly in each stack's depth:
    ``q(full) = q(1) + sum_s (L_s - 1) * (q(s at 2) - q(1))`` (exact when the layers of a stack are
    alike, as ours are: the first GATv2 layer differs, which the depth-1 run absorbs).

    On CUDA it measures, after ``torch.cuda.empty_cache``, the forward+backward peak and the
    optimizer-step peak of ``max_memory_allocated`` and the peak of ``max_memory_reserved`` (each
    relative to before the model was built); the predicted peak is the larger extrapolated phase.
    On CPU there is no allocator peak: it measures what :func:`measure` sees (parameter, gradient
    and optimizer-state bytes, saved activations), so the extrapolation is tested in CI.
    ``batch`` is one real micro-batch (moved to ``device``).

    Raises:
        ValueError: a LoRA/QLoRA or FSDP2 plan (the probe builds the plain model on one device;
            those plans use the analytical estimate), or ``steps`` < 1.
    """
    import gc

    import torch

    from astrobio_lib.models.fusion import build_model

    if plan.llm_adapter != "none" or plan.sharding == "fsdp2" or plan.cpu_offload != "none":
        raise ValueError(f"memory.probe: plan '{plan.name}' is not probed (it builds the plain model on one "
                         "device, without adapters, FSDP2 or offload); use memory.estimate for it")
    if steps < 1:
        raise ValueError(f"memory.probe: steps={steps}: must be >= 1")
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    full = probe_stacks(cfg)
    base = {k: 1 for k in full}
    configs = [dict(base)] + [{**base, k: 2} for k, n in full.items() if n > 1]
    batch = _to_device(batch, device)
    runs = []
    for depths in configs:
        small = depth_reduced(cfg, depths)
        if device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.synchronize(device)
            base_alloc, base_reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
            model = build_model(small, seed=seed).to(device)
            model.train()
            if plan.precision == "bf16":
                model = model.to(torch.bfloat16)
            q = _probe_cuda_run(model, batch, plan, steps, grad_accum_steps, base_alloc, base_reserved)
        else:
            model = build_model(small, seed=seed)
            model.train()
            m = measure(model, batch, plan)
            q = {k: float(m.device[k]) for k in ("parameters", "gradients", "optimizer", "activations")}
        del model
        runs.append({"depths": depths, **q})
    first = runs[0]
    extrapolated = {}
    for key in (k for k in first if k != "depths"):
        value = first[key]
        for run in runs[1:]:
            stack = next(k for k, d in run["depths"].items() if d == 2)
            value += (full[stack] - 1) * (run[key] - first[key])
        extrapolated[key] = value
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return ProbeResult(name, full, runs, extrapolated)


def measure_step_peak(cfg, plan: Plan, batch: dict[str, Any], steps: int = 2, grad_accum_steps: int = 1,
                      seed: int = 0, device: Any = "cuda") -> dict[str, float]:
    """Builds the full model on a CUDA device and returns the measured peaks of ``steps`` training
    steps (forward+backward and optimizer-step ``max_memory_allocated``, ``max_memory_reserved``),
    relative to before the model was built — the numbers the estimate and the probe predict.

    Raises:
        RuntimeError: no CUDA device.
    """
    import gc

    import torch

    from astrobio_lib.models.fusion import build_model

    if not torch.cuda.is_available():
        raise RuntimeError("measure_step_peak needs a CUDA device (on CPU use memory.measure)")
    device = torch.device(device)
    gc.collect()
    torch.cuda.empty_cache()
    base_alloc, base_reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    model = build_model(cfg, seed=seed).to(device)
    if plan.precision == "bf16":
        model = model.to(torch.bfloat16)
    try:
        q = _probe_cuda_run(model, _to_device(batch, device), plan, steps, grad_accum_steps, base_alloc, base_reserved)
    finally:
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return {**q, "peak_allocated": max(q["forward_backward_peak"], q["optimizer_step_peak"])}


def this_machine(hardware: Hardware) -> tuple[bool, str]:
    """Returns whether this machine is the configured hardware (the probe measures only the device
    it runs on) and a sentence saying which device is present."""
    import torch

    present = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    known = device_for_name(present) if present else None
    if hardware.device is None:
        return True, "configured for CPU" + (f" (a {present} is present too; the CPU is probed)" if present else "")
    if present is None:
        return False, (f"configured for {hardware.device.name} but this machine has no CUDA GPU: the probe runs "
                       f"on the pod (run this notebook there)")
    if known is None or known.name != hardware.device.name:
        return False, (f"configured for {hardware.device.name} but this machine has a {present}: the probe "
                       f"measures the device it runs on, so it is skipped here")
    return True, f"configured for {hardware.device.name} and this machine has one ({present})"


def compare_on_this_machine(cfg, plan: Plan, batch: dict[str, Any], shape: BatchShape, hardware: Hardware,
                            full_step: bool = True, steps: int = 2) -> "pd.DataFrame":  # noqa: F821
    """Returns the analytical estimate, the probe and (``full_step``) a measurement of the full model
    side by side for the device this runs on: on CUDA peak allocated / reserved of a training
    step; on CPU states + saved activations (the CPU has no allocator peak). Errors are relative to
    the full measurement when there is one."""
    import pandas as pd
    import torch

    cuda = torch.cuda.is_available() and hardware.device is not None
    est = estimate(cfg, plan, shape, hardware)
    pr = probe(cfg, plan, batch, device="cuda" if cuda else "cpu", steps=steps, grad_accum_steps=shape.grad_accum_steps)
    if cuda:
        rows = [{"source": "analytical estimate", "peak_allocated_GB": est.peak_allocated / GB,
                 "peak_reserved_GB": est.peak_reserved / GB, "peak_phase": est.peak_phase},
                {"source": f"probe (depth 1-2, extrapolated) on {pr.device}", "peak_allocated_GB": pr.peak_allocated / GB,
                 "peak_reserved_GB": pr.peak_reserved / GB}]
        if full_step:
            m = measure_step_peak(cfg, plan, batch, steps=steps, grad_accum_steps=shape.grad_accum_steps)
            rows.append({"source": "measured (full model)", "peak_allocated_GB": m["peak_allocated"] / GB,
                         "peak_reserved_GB": m["peak_reserved"] / GB})
        key = "peak_allocated_GB"
    else:
        from astrobio_lib.models.fusion import build_model

        rows = [{"source": "analytical estimate", "states_and_saved_activations_GB": est.measured_comparable / GB},
                {"source": "probe (depth 1-2, extrapolated) on cpu", "states_and_saved_activations_GB": pr.comparable / GB}]
        if full_step:
            model = build_model(cfg, seed=0)
            model.train()
            rows.append({"source": "measured (full model)",
                         "states_and_saved_activations_GB": measure(model, batch, plan).comparable / GB})
            del model
        key = "states_and_saved_activations_GB"
    table = pd.DataFrame(rows)
    if full_step:
        ref = table[key].iloc[-1]
        table["error_%"] = 100 * (table[key] / ref - 1)
    return table
