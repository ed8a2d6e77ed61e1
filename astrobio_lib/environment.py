"""Environment report: what this machine can run, with an ok / warn / fail verdict per item.

``python -m astrobio_lib.environment [--run-dir DIR] [--json]`` prints the report and, with
``--run-dir``, writes ``environment.json`` there. Notebook ``00_environment`` shows the same.

Secrets are never read: for Weights & Biases the report says whether a key is *present*
(``WANDB_API_KEY`` or a ``~/.netrc`` entry), never its value.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from astrobio_lib.memory.hardware import memory_bytes
from astrobio_lib.report import Check, overall, verdict_table

GB = 1024**3
MIN_TORCH = (2, 4)


@dataclass
class EnvironmentReport:
    """Facts about the machine, a verdict per item, and the recommended settings."""

    facts: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    recommended_precision: str = "fp32"
    recommended_attention: str = "sdpa"

    @property
    def verdict(self) -> str:
        return overall(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "checks": [asdict(c) for c in self.checks],
                "verdict": self.verdict, "recommended_precision": self.recommended_precision,
                "recommended_attention": self.recommended_attention}

    def to_text(self) -> str:
        return (verdict_table(self.checks) + f"\n\nverdict: {self.verdict.upper()}"
                f"\nrecommended precision: {self.recommended_precision}"
                f"\nrecommended attention backend: {self.recommended_attention}")


def _version(module: str) -> Optional[str]:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return getattr(mod, "__version__", "unknown")


def free_disk_bytes(path: Path) -> int:
    """Returns the free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def gpu_facts() -> list[dict[str, Any]]:
    """Returns one dict per visible CUDA device: name, memory, compute capability, bf16."""
    import torch

    gpus = []
    if not torch.cuda.is_available():
        return gpus
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / GB, 2),
                     "compute_capability": f"{p.major}.{p.minor}",
                     # bf16 tensor-core math needs Ampere (sm_80) or newer
                     "bf16": p.major >= 8})
    return gpus


def bitsandbytes_status() -> tuple[Optional[str], bool, str]:
    """Returns (version, optimizer_ok, detail): does an 8-bit AdamW step run here?"""
    import torch

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import bitsandbytes as bnb

            device = "cuda" if torch.cuda.is_available() else "cpu"
            # >= 4096 elements: smaller tensors keep 32-bit state and would prove nothing
            p = torch.nn.Parameter(torch.zeros(4096, device=device))
            opt = bnb.optim.AdamW8bit([p], lr=1e-3)
            p.grad = torch.ones_like(p)
            opt.step()
            state_dtype = opt.state[p]["state1"].dtype
    except Exception as exc:
        return _version("bitsandbytes"), False, f"{type(exc).__name__}: {exc}"
    ok = state_dtype == torch.uint8
    return bnb.__version__, ok, f"AdamW8bit step on {device}: state dtype {state_dtype}"


def flash_attn_status(cuda: bool) -> tuple[bool, str]:
    """Returns (usable, reason)."""
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:
        reason = (f"not importable ({type(exc).__name__}: {str(exc)[:120]}); optional extra "
                  f"`pip install flash-attn --no-build-isolation` needs CUDA and nvcc")
        return False, reason
    if not cuda:
        return False, f"flash-attn {flash_attn.__version__} installed but no CUDA GPU here"
    return True, f"flash-attn {flash_attn.__version__}"


def wandb_status() -> dict[str, Any]:
    """Returns W&B version, mode and whether a key is present (never the key itself)."""
    import netrc

    key_present = bool(os.environ.get("WANDB_API_KEY"))
    if not key_present:
        with contextlib.suppress(Exception):
            key_present = netrc.netrc().authenticators("api.wandb.ai") is not None
    mode = os.environ.get("WANDB_MODE") or ("disabled" if os.environ.get("WANDB_DISABLED") else "unset")
    return {"version": _version("wandb"), "mode": mode, "key_present": key_present}


def collect(run_dir: Optional[str | Path] = None, min_free_disk_gb: float = 1.0,
            require_gpu: bool = False) -> EnvironmentReport:
    """Returns the environment report for this machine.

    ``run_dir`` is where free disk space is measured (default: the current directory).
    """
    rep = EnvironmentReport()
    f, checks = rep.facts, rep.checks

    f["python"] = sys.version.split()[0]
    f["executable"] = sys.executable
    f["os"] = platform.platform()
    f["cpu_cores"] = os.cpu_count()
    py_ok = sys.version_info >= (3, 10)
    checks.append(Check("python", "ok" if py_ok else "fail",
                        f"{f['python']} on {f['os']}" + ("" if py_ok else " (need >= 3.10)")))

    total, avail = memory_bytes()
    f["ram_total_gb"] = round(total / GB, 1) if total else None
    f["ram_available_gb"] = round(avail / GB, 1) if avail else None
    ram_status = "ok" if total and total >= 8 * GB else "warn"
    checks.append(Check("cpu / ram", ram_status, f"{f['cpu_cores']} cores, {f['ram_total_gb']} GB RAM "
                        f"({f['ram_available_gb']} GB available)"))

    disk_path = Path(run_dir) if run_dir else Path.cwd()
    free = free_disk_bytes(disk_path)
    f["disk_free_gb"] = round(free / GB, 1)
    disk_ok = free >= min_free_disk_gb * GB
    checks.append(Check("disk", "ok" if disk_ok else "fail",
                        # "the run folder", not its absolute path: this line is shown in the run's reports
                        f"{f['disk_free_gb']} GB free at {'the run folder' if run_dir else disk_path}" +
                        ("" if disk_ok else f" (< min_free_disk_gb={min_free_disk_gb})")))

    try:
        import torch
    except Exception as exc:
        checks.append(Check("torch", "fail", f"not importable: {exc}; run `make venv`"))
        return rep
    f["torch"] = torch.__version__
    f["torch_cuda_build"] = torch.version.cuda
    cuda = torch.cuda.is_available()
    f["cuda_available"] = cuda
    tv = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    checks.append(Check("torch", "ok" if tv >= MIN_TORCH else "fail",
                        f"{torch.__version__} ({build})" + ("" if tv >= MIN_TORCH else " (need >= 2.4)")))

    f["gpus"] = gpu_facts()
    if f["gpus"]:
        for g in f["gpus"]:
            checks.append(Check(f"gpu {g['index']}", "ok",
                                f"{g['name']}, {g['memory_gb']} GB, sm_{g['compute_capability']}, "
                                f"bf16 {'yes' if g['bf16'] else 'no (fp16 + GradScaler)'}"))
    else:
        why = "torch is a CPU-only build" if not torch.version.cuda else "no CUDA device visible"
        checks.append(Check("gpu", "fail" if require_gpu else "warn",
                            f"none ({why}): CPU smoke runs only"))

    import torch.distributed as tdist

    f["nccl"] = tdist.is_available() and tdist.is_nccl_available()
    f["gloo"] = tdist.is_available() and tdist.is_gloo_available()
    dist_status = "ok" if f["gloo"] and (f["nccl"] or not cuda) else "warn"
    checks.append(Check("torch.distributed", dist_status,
                        f"gloo {'yes' if f['gloo'] else 'no'}, nccl {'yes' if f['nccl'] else 'no'}"))

    bnb_version, bnb_ok, bnb_detail = bitsandbytes_status()
    f["bitsandbytes"] = {"version": bnb_version, "optimizer_8bit_ok": bnb_ok, "detail": bnb_detail}
    checks.append(Check("bitsandbytes", "ok" if bnb_ok else "warn",
                        f"{bnb_version}: {bnb_detail}" if bnb_version else f"not installed: {bnb_detail}"))

    fa_ok, fa_reason = flash_attn_status(cuda)
    f["flash_attn"] = {"usable": fa_ok, "detail": fa_reason}
    checks.append(Check("flash-attn", "ok" if fa_ok or not cuda else "warn",
                        fa_reason if fa_ok else f"{fa_reason}; using SDPA"))

    for name, module in (("torch-geometric", "torch_geometric"), ("papermill", "papermill"),
                         ("jupytext", "jupytext")):
        v = _version(module)
        f[module] = v
        checks.append(Check(name, "ok" if v else "fail", v or "not installed; run `make venv`"))

    wb = wandb_status()
    f["wandb"] = wb
    wb_status = "ok"
    if wb["version"] is None:
        wb_status = "warn"
    elif wb["mode"] in ("online", "unset") and not wb["key_present"]:
        wb_status = "warn"
    checks.append(Check("wandb", wb_status,
                        f"{wb['version'] or 'not installed'}, WANDB_MODE={wb['mode']}, "
                        f"key {'present' if wb['key_present'] else 'absent'}"
                        + (" (runs log offline without a key)" if not wb["key_present"] else "")))

    if cuda and f["gpus"]:
        rep.recommended_precision = "bf16-mixed" if all(g["bf16"] for g in f["gpus"]) else "fp16-mixed"
        sm80 = all(float(g["compute_capability"]) >= 8.0 for g in f["gpus"])
        rep.recommended_attention = "flash_attn" if fa_ok and sm80 else "sdpa"
    else:
        # bf16 autocast on this class of CPU is slower than fp32; SDPA is the fused CPU path.
        rep.recommended_precision, rep.recommended_attention = "fp32", "sdpa"
    return rep


def write_json(report: EnvironmentReport, run_dir: str | Path) -> Path:
    """Writes ``environment.json`` into ``run_dir`` and returns its path."""
    path = Path(run_dir) / "environment.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.environment",
                                     description="Report what this machine can run.")
    parser.add_argument("--run-dir", help="also write environment.json into this run folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--min-free-disk-gb", type=float, default=1.0)
    parser.add_argument("--require-gpu", action="store_true")
    args = parser.parse_args(argv)
    rep = collect(args.run_dir, args.min_free_disk_gb, args.require_gpu)
    print(json.dumps(rep.to_dict(), indent=2, default=str) if args.json else rep.to_text())
    if args.run_dir:
        path = write_json(rep, args.run_dir)
        if not args.json:
            print(f"\nwrote {path}")
    return 1 if rep.verdict == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
