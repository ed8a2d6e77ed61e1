"""Every GPU claim of the README measured by one prepared command, with one table back.

``python benchmarks/gpu_check.py [--carry .gpu_carry] [--out DIR]`` on a CUDA machine (DIR: ``$OUT``,
else ``outputs/gpu_check``) first installs, offline, whatever the steps need that does not import
there from the carry folder that ``scripts/gpu_wheels.py`` prepared on a CPU machine, then runs four
steps, each in its own child process with its own time limit (a hang, a CUDA error or a crash in one
is reported with its error and the others still run), and writes ``gpu_check.md`` (a header with the
GPU, torch / CUDA versions, date and commit, then one table per step), ``gpu_check.json`` (the same,
complete) and ``gpu_check.log`` (every child's output) into DIR, rewritten after every step:

a. ``memory`` — ``memory.estimate`` and ``memory.probe`` against the measured peak allocated and
   reserved (``memory.measure_step_peak``) on configurations the estimator was *not* fitted on
   (checked against ``tests/data/measurements``): tiny / small / medium / wide and the gas-detection
   model, fp32 and bf16-mixed, AdamW and 8-bit AdamW, checkpointing off and on; SYNTHETIC batches
   (memory depends on shapes, not values); errors per row and the worst.
b. ``throughput`` — our step (``train.loop.accumulate`` + clip + the one host sync + optimizer and
   schedule, as ``run_loop`` does) vs a plain PyTorch loop vs compute only (batches staged on the GPU),
   MFU, for ``small`` and ``medium`` with compile off / on; and the gas-detection model at pod size
   (micro-batch 256): the trainer itself on the carried run, a plain loop over a DataLoader, staged
   batches, GPU utilisation, and whether the input path starves the GPU.
c. ``qlora`` — a tiny random Llama with a 4-bit NF4 base and LoRA adapters on CUDA: the loss falls,
   the frozen base is bitwise unchanged, peak memory vs ``memory.estimate`` with the QLoRA plan.
d. ``preemption`` — SIGTERM to a training run under ``torchrun``: checkpoint, exit 75, and the same
   command resumes from that step (DDP on 2 GPUs when there are 2; on one GPU one process on the GPU
   and 2 gloo ranks on its CPU, because ``train.distributed`` gives each rank its own GPU).

Every step and row records ``ok``, ``failed`` (with the error), ``skipped`` (with the reason) or
``dry``. A step's rows are started only while its time budget lasts (a row not started says so).

``--dry`` runs every step's setup and measurement code on the CPU with tiny sizes (rows marked
``dry``, no figure is a GPU claim): CI's proof that the script, its imports and its carry list are
sound (``tests/test_gpu_check.py``).

Usage:
  python benchmarks/gpu_check.py --carry .gpu_carry --out "$OUT"     # on the GPU machine
  .venv/bin/python benchmarks/gpu_check.py --dry --out /tmp/gpucheck  # on a CPU: the dry run
  python benchmarks/gpu_check.py --steps memory qlora ...            # a subset
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
BENCHMARKS = SCRIPT.parent
# the device runs the working tree without installing it: the package comes from the checkout
for _path in (str(REPO), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

STEPS = ("memory", "throughput", "qlora", "preemption")
TITLES = {
    "memory": "a. Memory: estimate and probe vs measured peak (configurations the estimator was not fitted on)",
    "throughput": "b. Throughput: our loop vs a plain loop vs compute only, MFU, input path",
    "qlora": "c. QLoRA: 4-bit base + LoRA adapters on the device",
    "preemption": "d. Preemption: SIGTERM under torchrun, checkpoint, exit 75, resume",
}
# Wall-clock limits per step on the GPU machine (seconds): the issue's 8 minutes for the whole command,
# out of a device lease of ~15 minutes that also pays for starting the machine and copying the carry.
GPU_LIMIT_S = {"memory": 140, "throughput": 175, "qlora": 55, "preemption": 85}
TOTAL_BUDGET_S = 480
DRY_LIMIT_S = 240  # per step on a CPU: a guard against a hang, far above what a dry step takes
ROW_RESERVE_S = {"memory": 15, "throughput": 25, "qlora": 20, "preemption": 25}  # a row starts only with this left
STATUSES = ("ok", "failed", "skipped", "dry")
KILL_GRACE_S = 10.0  # a timed-out step gets SIGTERM (its ranks checkpoint), then SIGKILL this much later

# a. memory: (label, model, precision, optimizer, checkpointing, micro-batch, sequence). None of these is
# one of the four H100 rows the estimator was fitted on (checked at run time against RECORDED).
MEMORY_CONFIGS = [
    ("tiny", "bf16-mixed", "adamw", False, 16, 256),
    ("small", "bf16-mixed", "adamw8bit", True, 16, 512),
    ("small", "fp32", "adamw", True, 4, 512),
    ("gas-small", "bf16-mixed", "adamw", False, 256, 0),
    ("medium", "bf16-mixed", "adamw", False, 2, 1024),
    ("medium", "fp32", "adamw8bit", False, 2, 256),
    ("gas-small", "fp32", "adamw8bit", False, 1024, 0),
    ("wide", "bf16-mixed", "adamw8bit", True, 8, 1024),
    ("wide", "bf16-mixed", "adamw", False, 4, 512),
]
# seconds a memory row takes on the GPU, about (estimate, a 5-run probe, the full model built on the CPU)
MEMORY_ROW_S = {"tiny": 8, "small": 12, "gas-small": 8, "medium": 20, "wide": 32}
# the dry run measures these on the CPU (states + saved activations) and only estimates the list above
DRY_MEMORY_CONFIGS = [
    ("tiny", "fp32", "adamw", False, 2, 64),
    ("gas-tiny", "fp32", "adamw8bit", False, 8, 0),
]
# b. throughput, in the order measured (the budget may end the list early): (preset, compile on) for the
# full multimodal presets, ("gas", loader worker processes) for the gas-detection model (compile: auto)
THROUGHPUT_RUNS = [("small", False), ("medium", False), ("gas", 0), ("medium", True), ("small", True), ("gas", 4)]
GAS_MICRO_BATCH = 256  # "pod size": the smoke run's 32 per micro-batch x 8
GAS_TRAIN_DRAWS = 64  # 6,400 training items on the carried 32 spectra: 25 micro-batches of 256 per epoch


# --------------------------------------------------------------------------- small helpers


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename (a reader never sees half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (the first 400 characters)."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:400]


def last_error_line(output: str) -> str:
    """The last line of a traceback (or the last non-empty line) of a child's output."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", ln) or ln.startswith("RuntimeError"):
            return ln[:400]
    return lines[-1][:400] if lines else "(no output)"


def step_status(rows: list[dict[str, Any]], dry: bool) -> tuple[str, Optional[str]]:
    """Returns the status of a step from its rows and, unless ok, why: failed when a row failed, dry in a
    dry run, skipped when every row was skipped (the reasons joined), ok otherwise."""
    if not rows:
        return "failed", "the step recorded no row"
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        return "failed", "; ".join(f"{r.get('config', r.get('run', '?'))}: {r.get('detail')}" for r in failed)[:600]
    if dry:
        return "dry", None
    if all(r.get("status") == "skipped" for r in rows):
        return "skipped", "; ".join(dict.fromkeys(str(r.get("detail")) for r in rows))[:600]
    return "ok", None


# --------------------------------------------------------------------------- tables


def format_cell(value: Any, fmt: Optional[str] = None) -> str:
    """A table cell: numbers with ``fmt`` (e.g. ``+.1f``), booleans as yes/no, None as "", pipes escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and fmt:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_table(columns: list[list[str]], rows: list[dict[str, Any]]) -> str:
    """Returns a markdown table: ``columns`` are [key, header, format?]; a row's ``detail`` (error or
    reason) is appended to its status cell."""
    if not columns:
        return ""
    lines = ["| " + " | ".join(c[1] for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for col in columns:
            key, fmt = col[0], (col[2] if len(col) > 2 else None)
            cell = format_cell(row.get(key), fmt)
            if key == "status" and row.get("detail"):
                cell = f"{cell}: {format_cell(row['detail'])}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    """Returns ``gpu_check.md``: the header (machine, versions, date, commit, what was installed) and
    one section per step (status, time, notes, table, summary)."""
    h = report.get("header", {})
    mode = "DRY RUN on the CPU: tiny sizes, no figure below is a GPU claim" if report.get("dry") else "GPU"
    out = [f"# GPU check — {h.get('gpu', '?')} — {report.get('started_utc', '?')[:10]}", "",
           f"Mode: **{mode}**. Command: `{report.get('command', '')}`", ""]
    keys = [("gpu", "GPU"), ("gpu_count", "GPUs"), ("gpu_memory_gb", "GPU memory (GB)"), ("driver", "driver"),
            ("torch", "torch"), ("cuda", "CUDA (torch build)"), ("cudnn", "cuDNN"), ("python", "python"),
            ("packages", "packages"), ("commit", "commit"), ("host", "host"), ("started_utc", "started (UTC)"),
            ("total_s", "wall time (s)")]
    out += ["| | |", "|---|---|"]
    for key, label in keys:
        value = h.get(key, report.get(key))
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        out.append(f"| {label} | {format_cell(value, '.0f' if key == 'total_s' else None)} |")
    if report.get("steps"):
        out += ["", "| step | status | time (s) | limit (s) |", "|---|---|---|---|"]
        for step in report["steps"]:
            out.append(f"| {step.get('title', step['name']).split(':')[0]} | {step['status']} | "
                       f"{format_cell(step.get('seconds'), '.0f')} | {format_cell(step.get('limit_s'), '.0f')} |")
    install = report.get("install") or {}
    if install:
        out += ["", f"Carry: {install.get('summary', '')}"]
        for line in install.get("failed", []):
            out.append(f"- install FAILED: {line}")
    for step in report.get("steps", []):
        took = step.get("seconds")
        out += ["", f"## {step.get('title', step['name'])}", "",
                f"**{step['status']}**" + (f": {step['detail']}" if step.get("detail") else "")
                + (f" ({took:.0f} s of a {step.get('limit_s', 0):.0f} s limit)" if took is not None else "")]
        for note in step.get("notes", []):
            out.append(f"- {note}")
        table = render_table(step.get("columns", []), step.get("rows", []))
        if table:
            out += ["", table]
        for line in step.get("summary", []):
            out += ["", line]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the carry: offline install


def importable(module: str) -> bool:
    """Whether ``module`` can be found on this interpreter's path (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def wheels_to_install(wheels_dir: Path, modules: dict[str, str], present: Callable[[str], bool] = importable
                      ) -> tuple[list[str], list[str]]:
    """Returns (distributions to install, those already importable): one per distribution that has a
    wheel in ``wheels_dir``; ``modules`` maps a normalised distribution name to its import name (a
    wheel without an entry is installed when its own name does not import)."""
    dists = sorted({re.sub(r"[-_.]+", "-", f.name.split("-")[0]).lower() for f in wheels_dir.glob("*.whl")})
    install, already = [], []
    for dist in dists:
        (already if present(modules.get(dist, dist.replace("-", "_"))) else install).append(dist)
    return install, already


def install_carried(carry: Path, site: Path) -> dict[str, Any]:
    """Installs, offline and without dependencies, the carried wheels whose package does not import
    here into ``site`` (prepended to ``sys.path`` and to the children's ``PYTHONPATH``); the image's
    own packages are never replaced. Returns what was installed, already present, and failed (pip's
    last line per distribution)."""
    wheels_dir = carry / "wheels"
    result: dict[str, Any] = {"carry": str(carry), "installed": [], "present": [], "failed": []}
    if not wheels_dir.is_dir():
        result["summary"] = f"no wheels in {wheels_dir} (run scripts/gpu_wheels.py on a CPU machine and carry it)"
        return result
    manifest = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((carry / "manifest.json").read_text())
    modules = {w["dist"]: w["module"] for w in manifest.get("wheels", []) if w.get("module")}
    install, result["present"] = wheels_to_install(wheels_dir, modules)
    site.mkdir(parents=True, exist_ok=True)
    for dist in install:  # one pip call each: a wheel that does not fit this python fails alone
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--find-links", str(wheels_dir), "--target", str(site), dist]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            ok, why = res.returncode == 0, last_error_line(res.stderr or res.stdout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, error_text(exc)
        (result["installed"].append(dist) if ok else result["failed"].append(f"{dist}: {why}"))
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    result["summary"] = (f"{carry} ({size / 1e6:.1f} MB, prepared {manifest.get('created_utc', '?')}): installed "
                         f"{', '.join(result['installed']) or 'nothing'}; already importable here: "
                         f"{', '.join(result['present']) or 'none'}"
                         + (f"; FAILED: {', '.join(f.split(':')[0] for f in result['failed'])}" if result["failed"] else ""))
    return result


# --------------------------------------------------------------------------- header


def git_commit(carry: Optional[Path]) -> str:
    """The checkout's commit (-dirty), or the commit the carry was prepared at (the device gets no .git)."""
    from astrobio_lib.results import commit

    here = commit()
    if here:
        return here
    if carry is not None:
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads((carry / "manifest.json").read_text())
            if manifest.get("commit"):
                return f"{manifest['commit']} (no git here: the commit the carry was prepared at)"
    return "n/a (no git, no carry manifest)"


def package_versions(names=("torch_geometric", "bitsandbytes", "peft", "transformers", "pynvml")) -> dict[str, str]:
    """Installed versions of the packages the steps use ("missing" when absent)."""
    from importlib import metadata

    dists = {"torch_geometric": "torch-geometric", "pynvml": "nvidia-ml-py"}
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(dists.get(name, name))
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def environment_header(carry: Optional[Path], dry: bool) -> dict[str, Any]:
    """The machine and software the figures come from."""
    import torch

    h: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda or "none (CPU build)",
                         "python": platform.python_version(), "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
                         "packages": package_versions(), "commit": git_commit(carry)}
    if torch.cuda.is_available() and not dry:
        props = torch.cuda.get_device_properties(0)
        h.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                 gpu_memory_gb=round(props.total_memory / 1e9, 1), cudnn=str(torch.backends.cudnn.version()))
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            h["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else "?"
    else:
        h.update(gpu="CPU (dry run)" if dry else "none: no CUDA device", gpu_count=0)
    return h


# --------------------------------------------------------------------------- parent: steps in children


def run_child(cmd: list[str], limit_s: float, result_path: Path, log_path: Path,
              env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Runs one step's child process (its own process group, so a timeout ends its torchrun ranks too)
    and returns the step record: the child's own (``result_path``, rewritten after every row) with
    ``failed`` and the reason when it timed out, crashed or exited non-zero without one; the rows it
    wrote before stay in."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    seconds = time.monotonic() - t0
    # the child's process group may still hold stragglers (a rank that ignored SIGTERM): end them
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    record: dict[str, Any] = {"status": "running", "rows": [], "columns": [], "notes": [], "summary": []}
    with contextlib.suppress(OSError, ValueError):
        record.update(json.loads(result_path.read_text()))
    record["seconds"], record["limit_s"], record["exit_code"] = round(seconds, 1), limit_s, proc.returncode
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    if timed_out:
        record["status"] = "failed"
        record["detail"] = (f"timed out after {limit_s:.0f} s (the step's limit); {len(record['rows'])} row(s) "
                            f"written before are kept")
    elif proc.returncode != 0 and record.get("status") in ("running", None, "ok", "dry", "skipped"):
        code = proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        record["status"], record["detail"] = "failed", f"child {how}: {last_error_line(output)}"
    elif record.get("status") == "running":
        record["status"], record["detail"] = "failed", f"the child ended without a result: {last_error_line(output)}"
    return record


def run_all(step_names: list[str], command_for: Callable[[str, float], list[str]], limit_for: Callable[[str], float],
            work: Path, out: Path, report: dict[str, Any], env: Optional[dict[str, str]] = None,
            total_budget_s: Optional[float] = None,
            on_step: Optional[Callable[[dict[str, Any]], None]] = None) -> dict[str, Any]:
    """Runs each step in a child (``command_for(name, deadline)``) within its limit, appends its record
    to ``report["steps"]``, writes the report after every step, and goes on whatever a step did. A
    step that the total budget no longer covers is skipped, saying so. Returns ``report``."""
    t0 = time.monotonic()
    log_all = out / "gpu_check.log"
    for name in step_names:
        limit = limit_for(name)
        if total_budget_s is not None:
            left = total_budget_s - (time.monotonic() - t0)
            if left < ROW_RESERVE_S.get(name, 20):
                report["steps"].append({"name": name, "title": TITLES.get(name, name), "status": "skipped",
                                        "detail": f"the command's budget of {total_budget_s:.0f} s was spent",
                                        "rows": [], "columns": [], "notes": [], "summary": []})
                write_report(report, out)
                continue
            limit = min(limit, left)
        print(f"== step {name} (limit {limit:.0f} s)", flush=True)
        result_path, log_path = work / f"{name}.json", work / f"{name}.log"
        result_path.unlink(missing_ok=True)
        deadline = time.time() + limit - 8  # the child stops starting rows before its parent stops it
        record = run_child(command_for(name, deadline), limit, result_path, log_path, env)
        record.setdefault("name", name)
        record["title"] = TITLES.get(name, name)
        report["steps"].append(record)
        with open(log_all, "a") as fh:
            fh.write(f"\n===== step {name}: {record['status']} ({record['seconds']:.0f} s) =====\n")
            fh.write(log_path.read_text(errors="replace") if log_path.exists() else "(no output)\n")
        print(f"   {name}: {record['status']}" + (f" — {record['detail']}" if record.get("detail") else "")
              + f" ({record['seconds']:.0f} s)", flush=True)
        write_report(report, out)
        if on_step:
            on_step(record)
    return report


def write_report(report: dict[str, Any], out: Path) -> None:
    """Writes gpu_check.json and gpu_check.md into ``out`` (only these and the log: the device brings
    back at most 8 files from $OUT)."""
    report["total_s"] = round(time.monotonic() - report.get("_t0", time.monotonic()), 1)
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    atomic_write_text(out / "gpu_check.json", json.dumps(clean, indent=1, default=str))
    atomic_write_text(out / "gpu_check.md", render_markdown(clean))


# --------------------------------------------------------------------------- child: one step


class StepContext:
    """What a step's code gets: the mode, the device, its deadline, the carry, and the record it fills
    (written to ``work/<step>.json`` after every row, so a killed step keeps what it measured)."""

    def __init__(self, name: str, work: Path, dry: bool, deadline: float, carry: Optional[Path]):
        import torch

        self.name, self.work, self.dry, self.deadline, self.carry = name, work, dry, deadline, carry
        self.cuda = torch.cuda.is_available() and not dry
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.record: dict[str, Any] = {"name": name, "status": "running", "columns": [], "rows": [], "notes": [],
                                       "summary": [], "reached": [], "imports": []}
        self.path = work / f"{name}.json"
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=work))

    def columns(self, columns: list[list[str]]) -> None:
        self.record["columns"] = columns

    def note(self, text: str) -> None:
        self.record["notes"].append(text)

    def summary(self, text: str) -> None:
        self.record["summary"].append(text)

    def reached(self, what: str) -> None:
        """Records that the step called measurement code ``what`` (the dry run's proof)."""
        if what not in self.record["reached"]:
            self.record["reached"].append(what)

    def time_left(self) -> float:
        return self.deadline - time.time()

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("status", "dry" if self.dry else "ok")
        self.record["rows"].append(row)
        self.write()
        return row

    def budget_allows(self, label: str, need_s: Optional[float] = None, **cells: Any) -> bool:
        """Whether a row that takes about ``need_s`` seconds (default: the step's reserve) may start;
        when not, records it as skipped (the step's time budget is spent)."""
        need = ROW_RESERVE_S.get(self.name, 20) if need_s is None or self.dry else need_s
        if self.time_left() >= need:
            return True
        self.add({**cells, "config": label, "status": "skipped",
                  "detail": f"not run: {max(self.time_left(), 0):.0f} s of the step's budget left"})
        return False

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.record, indent=1, default=str))


IMPORTED: Optional[set[str]] = None  # set by track_imports in a child


class MissingModules(RuntimeError):
    """Third-party modules a step needs that do not import here."""


def require(modules: list[str], why: str) -> None:
    """Imports each module.

    Raises:
        MissingModules: naming each that fails and the fix.
    """
    import importlib

    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
            if IMPORTED is not None:
                IMPORTED.add(m.partition(".")[0])
        except Exception as exc:  # noqa: BLE001 - an absent and a broken install both mean: cannot run
            missing.append(f"{m} ({error_text(exc)})")
    if missing:
        raise MissingModules(f"{why} needs {', '.join(missing)}: not in this image and not installed from the carry "
                             f"(scripts/gpu_wheels.py carries bitsandbytes, peft, safetensors, tokenizers, PyYAML, "
                             f"xarray, nvidia-ml-py; the rest is assumed present)")


def track_imports() -> set[str]:
    """Returns the set that collects, from now on, the top-level names of third-party modules imported
    by ``astrobio_lib`` and by this script (stdlib and the package itself excluded): what the carry
    list must cover (``tests/test_gpu_check.py`` checks it against ``scripts/gpu_wheels.py``)."""
    import builtins

    seen: set[str] = set()
    real = builtins.__import__
    std = set(sys.stdlib_module_names)
    ours = ("astrobio_lib", "__main__", "gpu_check", "memory_gpu")

    def tracking(name, globals=None, locals=None, fromlist=(), level=0):
        module = real(name, globals, locals, fromlist, level)  # only imports that succeed count
        if level == 0 and globals:
            importer = str(globals.get("__name__", ""))
            top = name.partition(".")[0]
            if importer.startswith(ours) and top not in std and top not in ("astrobio_lib", "memory_gpu") \
                    and not top.startswith("_"):
                seen.add(top)
        return module

    builtins.__import__ = tracking
    global IMPORTED
    IMPORTED = seen
    return seen


class UtilSampler:
    """Samples ``torch.cuda.utilization()`` (NVML, through pynvml) every 50 ms in a thread while
    ``window()`` is true; :meth:`mean` is the mean in % or a reason it has none."""

    def __init__(self, cuda: bool, window: Optional[Callable[[], bool]] = None):
        self.samples: list[float] = []
        self.reason: Optional[str] = None if cuda else "n/a (CPU)"
        self.window = window or (lambda: self.active)
        self.active = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if cuda:
            try:
                import torch

                torch.cuda.utilization()
            except Exception as exc:  # noqa: BLE001 - pynvml missing or NVML unusable: say why
                self.reason = f"n/a ({error_text(exc)[:80]})"

    def __enter__(self) -> "UtilSampler":
        if self.reason is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            if self.window():
                with contextlib.suppress(Exception):
                    self.samples.append(float(torch.cuda.utilization()))
            self._stop.wait(0.05)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def mean(self) -> Any:
        if self.reason:
            return self.reason
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else "n/a (no sample)"


def gpu_device(memory):
    """The ``memory.Device`` of GPU 0 (known to the catalogue, or its name and memory with no peak)."""
    import torch

    name = torch.cuda.get_device_name(0)
    return memory.device_for_name(name) or memory.Device(name, torch.cuda.get_device_properties(0).total_memory,
                                                         0.0, 0.0, True, "not in memory.DEVICES")


def config_gpu_name(memory) -> tuple[str, float]:
    """(gpu_name, gpu_memory_gb) for a params file on this GPU: the catalogue's name when it knows the
    device, else H100 SXM with this device's memory (the config accepts only known names)."""
    import torch

    known = memory.device_for_name(torch.cuda.get_device_name(0))
    total_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
    return (known.name if known else "H100 SXM"), round(total_gb, 1)


def carried_gas_run(ctx: StepContext, run_dir: Path) -> dict[str, Any]:
    """Copies the carried gas-detection data into ``run_dir/data`` (a fresh run folder); returns the
    values it was prepared with (``GAS_RUN`` of scripts/gpu_wheels.py).

    Raises:
        FileNotFoundError: no prepared data in the carry.
    """
    if ctx.carry is None or not (ctx.carry / "runs" / "gpucheck" / "data" / "gas_spectra" / "spectra.npz").is_file():
        raise FileNotFoundError(f"no prepared gas-detection run in {ctx.carry}/runs/gpucheck: run "
                                f"scripts/gpu_wheels.py on a CPU machine and carry the folder")
    manifest = json.loads((ctx.carry / "manifest.json").read_text())["gas_run"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(ctx.carry / "runs" / "gpucheck" / "data", run_dir / "data")
    return {k: manifest[k] for k in ("task", "gas_planets", "gas_atmospheres", "seed", "catalog_source")}


# ---- a. memory


def memory_model(name: str, ckpt: bool):
    """The model configuration of a memory row: the full multimodal presets (``memory_gpu.preset``,
    ``wide`` included) or the gas-detection model of a preset (``gas-small``)."""
    from memory_gpu import preset

    from astrobio_lib import tasks

    if name.startswith("gas-"):
        return tasks.model_config({"task": "gas_detection", "model_preset": name[4:], "activation_checkpointing": ckpt})
    return preset(name, ckpt)


def fitted_configs() -> set[tuple]:
    """The (preset, precision, optimizer, ckpt, mb, seq) rows the estimator was fitted on."""
    from memory_gpu import RECORDED

    return {(r["preset"], r["precision"], r["optimizer"], r["ckpt"], r["mb"], r["seq"])
            for r in json.loads(RECORDED.read_text())["rows"]}


def step_memory(ctx: StepContext) -> None:
    import torch

    from astrobio_lib import memory
    from astrobio_lib.models.fusion import build_model
    from astrobio_lib.models.synthetic import synthetic_batch

    require(["numpy", "torch_geometric"], "the memory step")
    ctx.columns([["config", "configuration"], ["quantity", "quantity"], ["estimate_gb", "estimate GB", ".3f"],
                 ["probe_gb", "probe GB", ".3f"], ["measured_gb", "measured GB", ".3f"],
                 ["estimate_err_pct", "est err %", "+.1f"], ["probe_err_pct", "probe err %", "+.1f"],
                 ["estimate_reserved_gb", "est reserved GB", ".3f"], ["probe_reserved_gb", "probe reserved GB", ".3f"],
                 ["measured_reserved_gb", "measured reserved GB", ".3f"],
                 ["estimate_reserved_err_pct", "est rsv err %", "+.1f"],
                 ["probe_reserved_err_pct", "probe rsv err %", "+.1f"], ["peak_phase", "estimated peak at"],
                 ["status", "status"]])
    fitted = fitted_configs()
    overlap = [c for c in MEMORY_CONFIGS if c[:6] in fitted]
    if overlap:  # the point of the step is configurations the estimator has not seen
        raise ValueError(f"memory configurations {overlap} are rows the estimator was fitted on")
    ctx.note("Batches are SYNTHETIC (models.synthetic.synthetic_batch, 72 graph nodes per sample): memory "
             "depends on shapes, not values. Measured = torch.cuda.max_memory_allocated / max_memory_reserved over "
             "2 steps (forward, backward, optimizer step) relative to before the model was built "
             "(memory.measure_step_peak); probe = memory.probe (depth-reduced copies, extrapolated).")
    ctx.note(f"None of these is one of the {len(fitted)} H100 configurations the estimator was fitted on "
             f"(tests/data/measurements/h100_memory_2026-11-23.json).")
    bnb_error = None
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the 8-bit rows are skipped with this reason
        bnb_error = error_text(exc)
    gb = 1e9
    if ctx.cuda:
        hw = memory.Hardware(gpu_device(memory))
        ctx.note(f"Estimates for {hw.name}.")
        configs = [(c, True) for c in MEMORY_CONFIGS]
    else:
        hw = memory.Hardware(memory.DEVICES["H200 SXM"])
        ctx.note("DRY: the GPU configurations are only estimated (for an H200 SXM); the tiny ones are measured on "
                 "the CPU, where there is no allocator peak: states + saved activations (estimate / probe / "
                 "memory.measure), the CPU view of the same code.")
        configs = [(c, True) for c in MEMORY_CONFIGS] + [(c, False) for c in DRY_MEMORY_CONFIGS]
    errors: dict[str, list[float]] = {"estimate": [], "probe": [], "estimate reserved": [], "probe reserved": []}
    for (model_name, precision, optimizer, ckpt, mb, seq), gpu_config in configs:
        plan = memory.Plan(precision=precision, optimizer=optimizer, activation_checkpointing=ckpt)
        label = f"{model_name} {plan.name} mb{mb}" + (f" s{seq}" if seq else "")
        if not ctx.budget_allows(label, need_s=MEMORY_ROW_S.get(model_name, 12)):
            continue
        if optimizer != "adamw" and bnb_error and (ctx.cuda or not gpu_config):
            ctx.add({"config": label, "status": "skipped", "detail": f"bitsandbytes does not import: {bnb_error}"})
            continue
        row: dict[str, Any] = {"config": label}
        try:
            cfg = memory_model(model_name, ckpt)
            batch = synthetic_batch(cfg, batch_size=mb, seq_len=seq or 16, seed=0, nodes_per_graph=72)
            shape = memory.shape_of(batch, cfg)
            if ctx.cuda:
                row["quantity"] = "peak allocated (CUDA)"
                est = memory.estimate(cfg, plan, shape, hw)
                ctx.reached("memory.probe(cuda)")
                pr = memory.probe(cfg, plan, batch, device="cuda", steps=2)
                ctx.reached("memory.measure_step_peak")
                full = memory.measure_step_peak(cfg, plan, batch, steps=2)
                e, p, m = est.peak_allocated, pr.peak_allocated, full["peak_allocated"]
                er, pres, mr = est.peak_reserved, pr.peak_reserved, full["peak_reserved"]
                row.update(estimate_gb=e / gb, probe_gb=p / gb, measured_gb=m / gb,
                           estimate_err_pct=100 * (e / m - 1), probe_err_pct=100 * (p / m - 1),
                           estimate_reserved_gb=er / gb, probe_reserved_gb=pres / gb, measured_reserved_gb=mr / gb,
                           estimate_reserved_err_pct=100 * (er / mr - 1), probe_reserved_err_pct=100 * (pres / mr - 1),
                           peak_phase=est.peak_phase)
                for key in ("estimate", "probe"):
                    errors[key].append(row[f"{key}_err_pct"])
                    errors[f"{key} reserved"].append(row[f"{key}_reserved_err_pct"])
            elif gpu_config:  # dry: the GPU configuration's estimate only
                est = memory.estimate(cfg, plan, shape, hw)
                row.update(quantity="peak allocated (estimate only)", estimate_gb=est.peak_allocated / gb,
                           estimate_reserved_gb=est.peak_reserved / gb, peak_phase=est.peak_phase,
                           detail="estimated only: measured on CUDA")
            else:  # dry: the same comparison on the CPU (states + saved activations)
                est = memory.estimate(cfg, plan, shape, memory.Hardware(None))
                ctx.reached("memory.probe(cpu)")
                pr = memory.probe(cfg, plan, batch, device="cpu", steps=1)
                ctx.reached("memory.measure")
                model = build_model(cfg, seed=0)
                model.train()
                meas = memory.measure(model, batch, plan).comparable
                del model
                e, p = est.measured_comparable, pr.comparable
                row.update(quantity="states + saved activations (CPU)", estimate_gb=e / gb, probe_gb=p / gb,
                           measured_gb=meas / gb, estimate_err_pct=100 * (e / meas - 1),
                           probe_err_pct=100 * (p / meas - 1), peak_phase=est.peak_phase)
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            row.update(status="failed", detail=f"CUDA out of memory ({error_text(exc)[:120]})")
        except Exception as exc:  # noqa: BLE001 - one configuration's error is its row's; the others still run
            row.update(status="failed", detail=error_text(exc))
            traceback.print_exc()
        ctx.add(row)
    for source, errs in errors.items():
        if errs:
            worst = max(errs, key=abs)
            what = "peak reserved" if source.endswith("reserved") else "peak allocated"
            goal = "(README: reserved within -2% to +10% on the fitted rows)" if source.endswith("reserved") else \
                "(goal: within ±10%, none more than 5% under)"
            ctx.summary(f"**{source.split()[0]}**: {what} error from {min(errs):+.1f}% to {max(errs):+.1f}% over "
                        f"{len(errs)} configurations; worst {worst:+.1f}% {goal}")


# ---- b. throughput


def _staged(batches: list[dict[str, Any]], device) -> list[dict[str, Any]]:
    from astrobio_lib.inference import to_device

    return [to_device(b, device) for b in batches]


def measure_loop(step: Callable[[int], None], warmup: int, timed: int, samples_per_step: int, device,
                 sampler: UtilSampler) -> float:
    """Returns samples/s of ``timed`` calls of ``step(i)`` after ``warmup`` untimed ones (compilation,
    allocator and cuDNN warm-up), the device synchronised at both ends; samples utilisation meanwhile."""
    import torch

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sampler.active = True
    t0 = time.perf_counter()
    for i in range(warmup, warmup + timed):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    sampler.active = False
    return samples_per_step * timed / seconds


def ours_step(model, optimizer, scheduler, precision: str, device):
    """One optimizer step as ``train.loop.run_loop`` takes it: ``accumulate`` (loss weights, no sync
    per micro-batch), clip, one device-to-host transfer of losses + stop flag + norm, step, schedule."""
    import torch

    from astrobio_lib.train.loop import accumulate

    def step(batches: list[dict[str, Any]]) -> None:
        loss_t = accumulate(model, batches, device, precision)
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        packed = torch.stack([loss_t[k].double() for k in sorted(loss_t)]
                             + [torch.zeros((), dtype=torch.float64, device=device)])
        packed = torch.cat([packed, norm.detach().to(packed.device, torch.float64).reshape(1)]).cpu()
        if math.isfinite(float(packed[0])):
            optimizer.step()
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def plain_step(model, optimizer, precision: str, device, move: bool):
    """One optimizer step of the plainest PyTorch loop: move (unless staged), autocast forward,
    ``loss / k`` backward per micro-batch, clip, step — no logging, no host sync."""
    import torch

    def step(batches: list[dict[str, Any]]) -> None:
        for batch in batches:
            if move:
                batch = {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                out = model(batch)
            (out["loss"] / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def throughput_preset(ctx: StepContext, preset: str, compile_on: bool) -> dict[str, Any]:
    """Ours / plain / compute-only samples/s, MFU and utilisation of a full multimodal preset on
    SYNTHETIC batches (micro 8 x accumulation 2, sequence 512 on the GPU)."""
    import torch

    from astrobio_lib import memory, tasks
    from astrobio_lib.models.fusion import build_model
    from astrobio_lib.models.presets import get_preset
    from astrobio_lib.models.synthetic import synthetic_batch
    from astrobio_lib.optim import build_optimizer, build_scheduler
    from astrobio_lib.train import compile as compile_mod
    from astrobio_lib.train.loop import seed_everything

    device = ctx.device
    if ctx.cuda:
        precision, micro, accum, seq, warmup, timed = "bf16-mixed", 8, 2, 512, 3, 10
    else:
        precision, micro, accum, seq, warmup, timed = "fp32", 2, 2, 32, 1, 2
    seed_everything(0)
    cfg = tasks.get("habitability").model(get_preset(preset))
    model = build_model(cfg, seed=0).to(device)
    model.train()
    if compile_on:
        compile_mod.compile_regions(model)
    # a pool of host batches cycled through (the loader's place: a synthetic batch has no collate cost)
    pool = [synthetic_batch(cfg, batch_size=micro, seq_len=seq, seed=i, nodes_per_graph=72) for i in range(2 * accum)]
    staged = _staged(pool, device)

    def batches(i: int, source: list) -> list[dict[str, Any]]:
        return [source[(i * accum + j) % len(source)] for j in range(accum)]

    results: dict[str, Any] = {}
    for kind in ("ours", "plain", "compute"):
        optimizer = build_optimizer(model, "adamw", 1e-4)
        if kind == "ours":
            body = ours_step(model, optimizer, build_scheduler(optimizer, "cosine", 1000, 10), precision, device)
            step = lambda i, b=body: b(batches(i, pool))  # noqa: E731
        else:
            body = plain_step(model, optimizer, precision, device, move=kind == "plain")
            source = pool if kind == "plain" else staged
            step = lambda i, b=body, s=source: b(batches(i, s))  # noqa: E731
        ctx.reached(f"throughput loop: {kind}")
        with UtilSampler(ctx.cuda) as sampler:
            results[kind] = measure_loop(step, warmup, timed, micro * accum, device, sampler)
        results[f"util_{kind}"] = sampler.mean()
        del optimizer
    plan = memory.Plan(precision=precision, optimizer="adamw")
    flops = sum(memory.flops_per_sample(cfg, memory.BatchShape(micro, seq, accum), plan).values())
    peak = gpu_device(memory).peak_flops_bf16 if ctx.cuda else None
    util = memory.mfu(results["ours"], flops, peak)
    del model, staged
    if ctx.cuda:
        torch.cuda.empty_cache()
    return {"config": f"{preset} (every modality)", "compile": "on" if compile_on else "off",
            "batch": f"{micro} x {accum}, seq {seq}, SYNTHETIC", "ours": results["ours"], "plain": results["plain"],
            "compute": results["compute"], "ours_plain": results["ours"] / results["plain"],
            "plain_compute": results["plain"] / results["compute"],
            "mfu": f"{100 * util:.1f}%" if util is not None else ("n/a (CPU)" if not ctx.cuda else "n/a (peak unknown)"),
            "util": f"{results['util_ours']} / {results['util_plain']} / {results['util_compute']}",
            "starves": starve_verdict(results["plain"], results["compute"]),
            "steps": f"{warmup} warm-up + {timed} timed"}


def starve_verdict(plain: float, compute: float) -> str:
    """Whether the input path (host batches, copies) starves the device: plain / compute-only < 0.9."""
    ratio = plain / compute
    return f"yes ({ratio:.2f} of compute-only)" if ratio < 0.9 else f"no ({ratio:.2f})"


def last_metric_step(path: Path) -> int:
    """The highest training step in a run's metrics.jsonl (0 when none yet)."""
    step = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if "loss" in rec:
                    step = max(step, int(rec["step"]))
    return step


def throughput_gas(ctx: StepContext, num_workers: int = 0) -> dict[str, Any]:
    """The gas-detection model at pod size on the carried run: the trainer itself (``train()``,
    samples/s from its metrics after the warm-up), a plain loop over a DataLoader of the same items,
    and the same steps on batches staged on the device."""
    import itertools

    import torch

    from astrobio_lib import config, memory, tasks
    from astrobio_lib.optim import build_optimizer
    from astrobio_lib.train import compile as compile_mod
    from astrobio_lib.train.loop import seed_everything, train

    require(["pandas", "pyarrow", "yaml"], "the gas-detection data")
    run_dir = ctx.scratch / f"gas_throughput_w{num_workers}"
    values = carried_gas_run(ctx, run_dir)
    if ctx.cuda:
        gpu_name, gpu_gb = config_gpu_name(memory)
        precision, micro, preset, warmup, timed = "bf16-mixed", GAS_MICRO_BATCH, "small", 10, 40
        hardware = {"gpu_name": gpu_name, "gpu_memory_gb": gpu_gb, "gpus_per_node": 1}
    else:
        precision, micro, preset, warmup, timed = "fp32", 16, "tiny", 2, 4
        hardware = {"gpu_name": "cpu"}
    cfg = config.from_mapping({**values, "run_dir": str(run_dir), **hardware, "model_preset": preset,
                               "gas_train_draws": GAS_TRAIN_DRAWS, "micro_batch_size": micro, "grad_accum_steps": 1,
                               "precision": precision, "optimizer": "adamw", "compile": "auto",
                               "max_steps": warmup + timed, "warmup_steps": 5, "val_every_steps": 100_000,
                               "checkpoint_every_steps": 100_000, "log_every_steps": 10, "wandb_mode": "disabled",
                               "num_workers": num_workers, "min_free_disk_gb": 0.01},
                              where="gpu_check throughput (gas)")
    metrics = run_dir / "metrics.jsonl"
    ctx.reached("train() on the carried gas-detection run")
    with UtilSampler(ctx.cuda, window=lambda: warmup <= last_metric_step(metrics) < warmup + timed) as sampler:
        train(cfg)
    elapsed = {}
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            elapsed[rec["step"]] = rec["elapsed_s"]
    ours = timed * micro / (elapsed[warmup + timed] - elapsed[warmup])
    util_ours = sampler.mean()

    # the plain loop and compute-only: the same model, items and collate, outside the trainer
    seed_everything(0)
    data = tasks.of(cfg).open_data(cfg, run_dir / "data")
    model = tasks.build_model(cfg.flat(), ctx.device)
    model.train()
    if compile_mod.wanted(cfg.train.compile, ctx.device):
        compile_mod.compile_regions(model)

    def loader_batches():
        for _ in itertools.count():  # epochs
            yield from torch.utils.data.DataLoader(data.train, batch_size=micro, shuffle=True, drop_last=True,
                                                   collate_fn=data.collate, num_workers=num_workers,
                                                   pin_memory=ctx.cuda)

    results = {}
    for kind in ("plain", "compute"):
        optimizer = build_optimizer(model, "adamw", 1e-4)
        body = plain_step(model, optimizer, precision, ctx.device, move=kind == "plain")
        if kind == "plain":
            stream = loader_batches()
            step = lambda i, b=body, s=stream: b([next(s)])  # noqa: E731
        else:
            source = loader_batches()
            staged = _staged([next(source) for _ in range(8)], ctx.device)
            step = lambda i, b=body, s=staged: b([s[i % len(s)]])  # noqa: E731
        ctx.reached(f"gas loop: {kind}")
        with UtilSampler(ctx.cuda) as sampler:
            results[kind] = measure_loop(step, warmup, timed, micro, ctx.device, sampler)
        results[f"util_{kind}"] = sampler.mean()
        del optimizer
    mcfg = tasks.model_config(cfg.flat())
    flops = sum(memory.flops_per_sample(mcfg, memory.BatchShape(micro, 0, 1),
                                        memory.Plan(precision=precision, optimizer="adamw")).values())
    peak = gpu_device(memory).peak_flops_bf16 if ctx.cuda else None
    util = memory.mfu(ours, flops, peak)
    compiled = compile_mod.wanted(cfg.train.compile, ctx.device)
    del model
    return {"config": f"gas detection ({preset}), trainer num_workers {num_workers}",
            "compile": "auto (on)" if compiled else "auto (off)", "batch": f"{micro} x 1, SIMULATED spectra",
            "ours": ours, "plain": results["plain"], "compute": results["compute"],
            "ours_plain": ours / results["plain"], "plain_compute": results["plain"] / results["compute"],
            "mfu": f"{100 * util:.2f}%" if util is not None else ("n/a (CPU)" if not ctx.cuda else "n/a (peak unknown)"),
            "util": f"{util_ours} / {results['util_plain']} / {results['util_compute']}",
            "starves": starve_verdict(results["plain"], results["compute"]),
            "steps": f"{warmup} warm-up + {timed} timed"}


def step_throughput(ctx: StepContext) -> None:
    import torch

    require(["numpy", "torch_geometric"], "the throughput step")
    ctx.columns([["config", "model"], ["compile", "compile"], ["batch", "micro x accum"],
                 ["ours", "ours samples/s", ".1f"], ["plain", "plain samples/s", ".1f"],
                 ["compute", "compute-only samples/s", ".1f"], ["ours_plain", "ours/plain", ".3f"],
                 ["plain_compute", "plain/compute", ".3f"], ["mfu", "MFU (ours)"],
                 ["util", "GPU util % ours / plain / compute"], ["starves", "input path starves the GPU?"],
                 ["steps", "steps"], ["status", "status"]])
    ctx.note("ours = the trainer's step (train.loop.accumulate + clip + one host sync + optimizer + schedule) for "
             "the presets, the trainer itself (train()) for the gas-detection model; plain = a plain PyTorch loop "
             "(move, autocast forward, backward, clip, step); compute-only = plain on batches staged on the device "
             "beforehand. Presets run on SYNTHETIC batches (no collate cost: their input path is the host-to-device "
             "copy); the gas model on the carried SIMULATED spectra through the task's dataset and collate. MFU "
             "against the GPU's dense bf16 peak (memory.DEVICES) with memory.flops_per_sample. Targets (README): "
             "ours/plain >= 0.97, plain/compute >= 0.95, medium with compile >= 40% MFU on an H100-class GPU.")
    runs = list(THROUGHPUT_RUNS)
    if not ctx.cuda:
        runs = [("tiny", False), ("gas", 0)]
        ctx.note("DRY: tiny preset and the tiny gas model on the CPU, compile off (compiling on a CPU takes minutes; "
                 "the compile rows run on the GPU only).")
    else:
        ctx.note("Rows run in this order until the step's budget ends: compile-on rows come after the compile-off "
                 "ones and may be marked 'not run' (compiling adds tens of seconds per preset).")
    for preset, option in runs:
        gas = preset == "gas"
        label = f"gas detection, trainer num_workers {option}" if gas else f"{preset} (every modality)"
        need = 45 if gas else (70 if option else 30)
        if not ctx.budget_allows(label, need_s=need, compile="auto" if gas else ("on" if option else "off")):
            continue
        try:
            row = throughput_gas(ctx, num_workers=option) if gas else throughput_preset(ctx, preset, option)
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            row = {"config": label, "status": "failed", "detail": f"CUDA out of memory ({error_text(exc)[:120]})"}
        except Exception as exc:  # noqa: BLE001 - one configuration's error is its row's
            traceback.print_exc()
            row = {"config": label, "status": "failed", "detail": error_text(exc)}
        ctx.add(row)


# ---- c. QLoRA


def step_qlora(ctx: StepContext) -> None:
    import torch

    from astrobio_lib import memory, tasks
    from astrobio_lib.models import adapters, pretrained
    from astrobio_lib.models.synthetic import synthetic_batch
    from astrobio_lib.optim import build_optimizer
    from astrobio_lib.train.loop import accumulate, seed_everything

    ctx.columns([["config", "configuration"], ["steps", "steps"], ["loss_first", "loss first 3", ".4f"],
                 ["loss_last", "loss last 3", ".4f"], ["loss_falls", "loss falls"],
                 ["base_unchanged", "frozen base bitwise unchanged"], ["nf4_layers", "4-bit layers"],
                 ["trainable", "trainable params"], ["estimate_gb", "estimate GB", ".3f"],
                 ["measured_gb", "measured GB", ".3f"], ["estimate_err_pct", "est err %", "+.1f"],
                 ["measured_reserved_gb", "measured reserved GB", ".3f"], ["status", "status"]])
    label = "QLoRA r4 on a tiny random Llama (256 hidden, 4 layers)"
    try:
        require(["bitsandbytes", "peft", "transformers", "safetensors", "tokenizers"], "QLoRA")
    except MissingModules as exc:
        ctx.add({"config": label, "status": "skipped", "detail": str(exc)})
        return
    ctx.note("A tiny RANDOM Llama checkpoint (models.pretrained.make_tiny_checkpoint: 256 hidden, 4 layers, SwiGLU "
             "688; it knows no language), its blocks' linear layers quantised to NF4 (bitsandbytes Linear4bit) and "
             "LoRA adapters (peft) on q/k/v/o/gate/up/down, built by tasks.build_model as the trainer builds it; "
             "trained on one fixed SYNTHETIC batch (the loss must fall), the rest of the model from the preset.")
    if ctx.cuda:
        preset, precision, mb, seq, steps = "small", "bf16-mixed", 8, 96, 20
    else:
        preset, precision, mb, seq, steps = "tiny", "fp32", 2, 32, 6
    seed_everything(0)
    llama = pretrained.make_tiny_checkpoint(ctx.scratch / "tiny_llama", hidden=256, layers=4, intermediate=688)
    flat = {"task": "habitability", "model_preset": preset, "llm_checkpoint": str(llama), "llm_adapter": "qlora",
            "lora_rank": 4, "precision": precision, "seed": 0, "attention": "sdpa"}
    row: dict[str, Any] = {"config": f"{label}, {preset} preset, {precision}, mb{mb} s{seq}"}
    try:
        cfg = tasks.model_config(flat)
        device = ctx.device
        if ctx.cuda:
            torch.cuda.empty_cache()
            torch.cuda.synchronize()
            base_alloc, base_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
            torch.cuda.reset_peak_memory_stats()
        model = tasks.build_model(flat, device)
        model.train()
        # the frozen base's reference copy on the host: a device copy would count in the measured peak
        frozen = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                  if k in model.frozen_state_keys}
        row["nf4_layers"] = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
        row["trainable"] = adapters.parameter_counts(model)["trainable"]
        optimizer = build_optimizer(model, "adamw", 1e-3)
        batch = synthetic_batch(cfg, batch_size=mb, seq_len=seq, seed=0, nodes_per_graph=72)
        losses = []
        ctx.reached("QLoRA training steps")
        for _ in range(steps):
            loss_t = accumulate(model, [batch], device, precision)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss_t["loss"]))
        after = model.state_dict()
        changed = [k for k, v in frozen.items() if not torch.equal(v, after[k].cpu())]
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        row.update(steps=steps, loss_first=first, loss_last=last, loss_falls=last < first,
                   base_unchanged=not changed and bool(frozen))
        plan = memory.Plan(precision=precision, optimizer="adamw", llm_adapter="qlora", lora_rank=4)
        shape = memory.shape_of(batch, cfg)
        if ctx.cuda:
            torch.cuda.synchronize()
            measured = torch.cuda.max_memory_allocated() - base_alloc
            est = memory.estimate(cfg, plan, shape, memory.Hardware(gpu_device(memory)))
            row.update(estimate_gb=est.peak_allocated / 1e9, measured_gb=measured / 1e9,
                       estimate_err_pct=100 * (est.peak_allocated / measured - 1),
                       measured_reserved_gb=(torch.cuda.max_memory_reserved() - base_reserved) / 1e9)
        else:
            est = memory.estimate(cfg, plan, shape, memory.Hardware(None))
            row.update(estimate_gb=est.peak_allocated / 1e9, measured_gb=None)
        problems = ([f"the loss did not fall ({first:.4f} -> {last:.4f})"] if last >= first and ctx.cuda else []) + \
            ([f"{len(changed)} frozen base tensors changed, e.g. {changed[:2]}"] if changed else []) + \
            (["no frozen base tensors recorded"] if not frozen else [])
        if problems:
            row.update(status="failed", detail="; ".join(problems))
        elif not ctx.cuda:
            row["detail"] = "CPU: no allocator peak (estimate only)"
    except Exception as exc:  # noqa: BLE001 - reported as the row's error
        traceback.print_exc()
        row.update(status="failed", detail=error_text(exc))
    ctx.add(row)


# ---- d. preemption


def rank_pids(agent_pid: int) -> list[int]:
    """The processes torchrun's agent started (its children: the ranks), from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == agent_pid:  # field 4 of /proc/PID/stat: the parent's pid
                kids.append(int(stat.parent.name))
    return kids


def run_group(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Runs ``cmd`` in its own process group and returns (exit code, output); on timeout the whole
    group (torchrun and its ranks) is killed and the code is -9."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0] + f"\n(killed after {timeout:.0f} s)"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers
    return proc.returncode, output


def rank_exit_codes(torchrun_output: str) -> dict[int, int]:
    """{rank: exit code} from the failure summary torchrun's agent prints when ranks exit non-zero
    (``rank : 1 (local_rank: 1)`` then ``exitcode : 75 (pid: ...)``), in rank order."""
    pairs = re.findall(r"^\s*rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)", torchrun_output, re.MULTILINE)
    return {int(r): int(c) for r, c in sorted(pairs, key=lambda rc: int(rc[0]))}


def judge_rank_exits(codes: dict[int, int], finished: dict[int, int], stopped: int, nproc: int
                     ) -> tuple[list[str], list[str]]:
    """Returns (problems, notes) about the training processes' exits after SIGTERM: each must exit 75 —
    or, under torchrun, may be ended by the agent's SIGTERM (-15) once another rank exited 75, provided
    it had logged "finished step <stopped>, checkpoint" itself (its work was done: the agent tears the
    others down as soon as one rank exits non-zero)."""
    problems, notes = [], []
    if sorted(codes) != list(range(nproc)):
        problems.append(f"exit codes known for ranks {sorted(codes)}, expected {nproc} process(es)")
    for rank, c in sorted(codes.items()):
        if c == 75:
            continue
        if nproc > 1 and c == -15 and finished.get(rank) == stopped and 75 in codes.values():
            notes.append(f"rank {rank} logged 'finished step {stopped}, checkpoint' and was then ended by "
                         f"torchrun's SIGTERM (-15) while cleaning up, after another rank exited 75")
        else:
            problems.append(f"rank {rank} exited {c}, expected 75"
                            + ("" if finished.get(rank) == stopped else f" (no 'finished step {stopped}' line)"))
    return problems, notes


def preempt_and_resume(ctx: StepContext, label: str, values: dict[str, Any], nproc: int,
                       env: dict[str, str], signal_at: int) -> dict[str, Any]:
    """Launches a training run (``torchrun --nproc_per_node=nproc -m astrobio_lib.train`` when nproc > 1,
    ``python -m astrobio_lib.train`` for one process), sends SIGTERM to the training processes once the
    metrics reach step ``signal_at``, checks the checkpoint, the exit codes and train_result.json, then
    runs the same command again (with ``max_steps`` lowered to 3 steps past the stop, a change the
    config allows on resume) and checks that it resumed from that checkpoint and finished. Returns the row."""
    import yaml

    run_dir = Path(values["run_dir"])
    params = run_dir.parent / f"{run_dir.name}.yaml"
    params.write_text(yaml.safe_dump(values, sort_keys=True))
    base = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            if nproc > 1 else [sys.executable])
    cmd = base + ["-m", "astrobio_lib.train", str(params)]
    shown = (["torchrun", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else ["python"]) + \
        ["-m", "astrobio_lib.train", params.name]
    row: dict[str, Any] = {"run": label, "command": " ".join(shown)}
    metrics = run_dir / "metrics.jsonl"
    log1 = run_dir.parent / f"{run_dir.name}.first.log"
    ctx.reached(f"SIGTERM: {label}")
    with open(log1, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
    try:
        limit = time.monotonic() + max(ctx.time_left() - 20, 10)
        while time.monotonic() < limit and proc.poll() is None and last_metric_step(metrics) < signal_at:
            time.sleep(0.05)
        if proc.poll() is not None:
            print(log1.read_text(errors="replace")[-4000:], flush=True)
            raise RuntimeError(f"the run ended (exit {proc.returncode}) before step {signal_at}: "
                               f"{last_error_line(log1.read_text(errors='replace'))}")
        if last_metric_step(metrics) < signal_at:
            raise TimeoutError(f"step {signal_at} not reached within the step's budget")
        # SIGTERM to the training processes, as the pipeline forwards it to torchrun's ranks
        targets = rank_pids(proc.pid) if nproc > 1 else [proc.pid]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    out1 = log1.read_text(errors="replace")
    print(f"---- {label}: the interrupted run (exit {code}), last lines ----\n" + "\n".join(out1.splitlines()[-40:]),
          flush=True)
    result = json.loads((run_dir / "train_result.json").read_text())
    stopped = int(result["step"])
    rank_codes = list(rank_exit_codes(out1).values()) if nproc > 1 else [code]  # in rank order
    checkpoint = Path(result.get("last_checkpoint") or "")
    row.update(signal_at=signal_at, stopped_at=stopped, interrupted=result["stopped_because"] == "interrupted",
               checkpoint=checkpoint.name if checkpoint.name else None,
               exit_codes=", ".join(map(str, rank_codes)) + (f" (torchrun: {code})" if nproc > 1 else ""))
    problems = []
    if result["stopped_because"] != "interrupted" or result.get("interrupted_by") != "SIGTERM":
        problems.append(f"stopped_because={result['stopped_because']}, interrupted_by={result.get('interrupted_by')}")
    if not checkpoint.is_file() or checkpoint.name != f"step_{stopped:08d}.pt":
        problems.append(f"no checkpoint of step {stopped} ({checkpoint})")
    finished = {int(r): int(n) for r, n in re.findall(r"\[rank (\d+)\] [^\n]*?: finished step (\d+), checkpoint", out1)}
    codes = rank_exit_codes(out1) if nproc > 1 else {0: code}
    bad, notes = judge_rank_exits(codes, finished, stopped, nproc)
    problems += bad
    if notes:
        row["detail"] = "; ".join(notes)
    # the same command again: resumes from the checkpoint
    ctx.reached(f"resume: {label}")
    rerun_code, out2 = run_group(cmd + ["--set", f"max_steps={stopped + 3}"], env, max(ctx.time_left() - 5, 10))
    print(f"---- {label}: the rerun (exit {rerun_code}), last lines ----\n" + "\n".join(out2.splitlines()[-25:]),
          flush=True)
    final = json.loads((run_dir / "train_result.json").read_text())
    resumed = re.search(r"resumed from \S*step_(\d+)\.pt at step (\d+)", out2)
    row.update(resumed_from=int(resumed.group(2)) if resumed else None, final_step=int(final["step"]),
               resume_exit=rerun_code)
    if rerun_code != 0:
        problems.append(f"the resumed run exited {rerun_code}: {last_error_line(out2)}")
    if not resumed or int(resumed.group(2)) != stopped:
        problems.append(f"the rerun did not resume from step {stopped}")
    if final["step"] != stopped + 3 or final["start_step"] != stopped:
        problems.append(f"the rerun went from step {final['start_step']} to {final['step']}, expected {stopped} -> "
                        f"{stopped + 3}")
    if problems:
        row.update(status="failed", detail="; ".join(problems + ([row["detail"]] if row.get("detail") else [])))
    return row


def step_preemption(ctx: StepContext) -> None:
    import torch

    from astrobio_lib import memory

    require(["pandas", "pyarrow", "yaml"], "the trainer on the gas-detection data")
    ctx.columns([["run", "run"], ["command", "command"], ["signal_at", "SIGTERM once metrics reach step"],
                 ["stopped_at", "stopped at step"], ["checkpoint", "checkpoint"], ["exit_codes", "exit code(s)"],
                 ["resumed_from", "resumed from step"], ["final_step", "final step"], ["resume_exit", "rerun exit"],
                 ["status", "status"]])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    common = {"model_preset": "tiny", "precision": "fp32", "micro_batch_size": 16, "gas_train_draws": 8,
              "max_steps": 100_000, "warmup_steps": 2, "val_every_steps": 100_000, "checkpoint_every_steps": 100_000,
              "log_every_steps": 1, "compile": "off", "wandb_mode": "disabled", "min_free_disk_gb": 0.01,
              "preempt_grace_s": 25.0}
    runs: list[tuple[str, dict[str, Any], int, dict[str, str]]] = []
    n_gpus = torch.cuda.device_count() if ctx.cuda else 0
    cpu_env = {**env, "CUDA_VISIBLE_DEVICES": ""}
    if ctx.cuda:
        gpu_name, gpu_gb = config_gpu_name(memory)
        gpu = {"gpu_name": gpu_name, "gpu_memory_gb": gpu_gb, "model_preset": "small", "precision": "bf16-mixed",
               "micro_batch_size": 64}
        runs.append(("1 process on cuda:0", {**common, **gpu, "gpus_per_node": 1, "nproc": 1}, 1, env))
        if n_gpus >= 2:
            runs.append(("torchrun 2 ranks, DDP (NCCL) on cuda:0 + cuda:1",
                         {**common, **gpu, "gpus_per_node": 2, "nproc": 2, "sharding": "ddp"}, 2, env))
        else:
            runs.append(("torchrun 2 ranks, DDP (gloo) on this machine's CPU",
                         {**common, "gpu_name": "cpu", "nproc": 2, "sharding": "ddp"}, 2, cpu_env))
            ctx.note("One GPU: two ranks cannot share it — astrobio_lib.train.distributed.init gives rank k cuda:k "
                     "and NCCL refuses two ranks on one device — so the 2-rank run is DDP over gloo on this machine's "
                     "CPU (CUDA hidden), and the GPU run is one process.")
    else:
        runs.append(("1 process (CPU)", {**common, "gpu_name": "cpu", "nproc": 1}, 1, cpu_env))
        runs.append(("torchrun 2 ranks, DDP (gloo) on the CPU",
                     {**common, "gpu_name": "cpu", "nproc": 2, "sharding": "ddp"}, 2, cpu_env))
    ctx.note("SIGTERM goes to the training processes (torchrun's ranks), as the pipeline forwards it; each finishes "
             "its step, writes the checkpoint within preempt_grace_s and exits 75 (torchrun's agent reports each "
             "rank's exit code and itself exits 1 for any non-zero rank). The same command then runs again, with "
             "max_steps 3 past the stop (allowed on resume), and must resume from that checkpoint. Data: the "
             "carried gas-detection run (SIMULATED spectra, prepared on a CPU); compile off (the check is about "
             "checkpoint and resume, not speed).")
    for label, values, nproc, run_env in runs:
        if not ctx.budget_allows(label, need_s=35, run=label):
            continue
        try:
            run_dir = ctx.scratch / re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
            prepared = carried_gas_run(ctx, run_dir)
            row = preempt_and_resume(ctx, label, {**prepared, **values, "run_dir": str(run_dir)}, nproc, run_env,
                                     signal_at=3)
        except Exception as exc:  # noqa: BLE001 - the run's error is its row's
            traceback.print_exc()
            row = {"run": label, "status": "failed", "detail": error_text(exc)}
        ctx.add(row)


STEP_FUNCTIONS: dict[str, Callable[[StepContext], None]] = {
    "memory": step_memory, "throughput": step_throughput, "qlora": step_qlora, "preemption": step_preemption}


def child_main(args: argparse.Namespace) -> int:
    """Runs one step in this process (the parent started it); the record is in ``work/<step>.json``."""
    imports = track_imports()
    work = Path(args.work)
    if args.threads:  # the dry run shares a small CPU: one thread per process keeps it polite
        import torch

        torch.set_num_threads(args.threads)
    ctx = StepContext(args.step, work, args.dry, args.deadline or time.time() + DRY_LIMIT_S,
                      Path(args.carry) if args.carry else None)
    code = 0
    try:
        if not ctx.cuda and not args.dry:
            ctx.add({"config": "all", "status": "skipped", "detail": "no CUDA device: run with --dry on a CPU"})
        else:
            STEP_FUNCTIONS[args.step](ctx)
        ctx.record["status"], ctx.record["detail"] = step_status(ctx.record["rows"], args.dry)
    except MissingModules as exc:
        ctx.record["status"], ctx.record["detail"] = "failed", str(exc)
        code = 1
    except BaseException as exc:  # noqa: BLE001 - everything the step raised is its error, written before exit
        traceback.print_exc()
        ctx.record["status"], ctx.record["detail"] = "failed", error_text(exc)
        code = 1
    finally:
        ctx.record["imports"] = sorted(imports)
        ctx.write()
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    return code


# --------------------------------------------------------------------------- parent


def prepare_dry_carry(work: Path) -> Path:
    """The dry run without a carry: prepares the gas-detection run's data with scripts/gpu_wheels.py
    (``--data-only``: no downloads) into the work folder, proving that part of the carry too.

    Raises:
        RuntimeError: the preparation failed (its last line).
    """
    carry = work / "carry"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_wheels.py"), "--data-only", "--dest", str(carry)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"scripts/gpu_wheels.py --data-only failed: {last_error_line(res.stderr + res.stdout)}")
    return carry


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "outputs" / "gpu_check"),
                        help="folder for gpu_check.md / .json / .log (default: $OUT, else outputs/gpu_check)")
    parser.add_argument("--carry", default=None,
                        help="the folder scripts/gpu_wheels.py prepared (default: .gpu_carry when it exists)")
    parser.add_argument("--dry", action="store_true", help="every step on the CPU with tiny sizes, rows marked dry")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # a child: one step
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        return child_main(args)

    # an empty --out (an unset $OUT expanded by a shell) must not write into the checkout's root
    out = Path(args.out or REPO / "outputs" / "gpu_check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    default_carry = REPO / ".gpu_carry"
    carry = Path(args.carry).resolve() if args.carry else (default_carry if default_carry.is_dir() else None)
    report: dict[str, Any] = {"_t0": time.monotonic(), "what": __doc__.split("\n\n")[0], "dry": args.dry,
                              "started_utc": utc_now(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "steps": []}
    (out / "gpu_check.log").write_text(f"gpu_check started {report['started_utc']}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    site = work / "site"
    if carry is not None and not args.dry:
        report["install"] = install_carried(carry, site)
        print(f"carry: {report['install']['summary']}", flush=True)
    if args.dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU's, on any machine
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"  # CI's 2 cores are shared: one thread per process
        if carry is None or not (carry / "runs" / "gpucheck" / "data").is_dir():
            print("dry run: preparing the gas-detection run's data (scripts/gpu_wheels.py --data-only)", flush=True)
            carry = prepare_dry_carry(work)
        report["install"] = {"summary": f"dry run: nothing installed; data from {carry}"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    report["header"] = environment_header(carry, args.dry)
    write_report(report, out)

    def command_for(name: str, deadline: float) -> list[str]:
        cmd = [sys.executable, str(SCRIPT), "--step", name, "--work", str(work), "--deadline", f"{deadline:.1f}"]
        if carry is not None:
            cmd += ["--carry", str(carry)]
        return cmd + (["--dry", "--threads", "1"] if args.dry else [])

    limit_for = (lambda name: DRY_LIMIT_S) if args.dry else (lambda name: GPU_LIMIT_S[name])
    spent = time.monotonic() - report["_t0"]
    run_all(args.steps, command_for, limit_for, work, out, report, env,
            total_budget_s=None if args.dry else TOTAL_BUDGET_S - spent)
    write_report(report, out)
    shutil.rmtree(work, ignore_errors=True)
    print()
    print((out / "gpu_check.md").read_text())
    print(f"written: {out / 'gpu_check.md'}, {out / 'gpu_check.json'}, {out / 'gpu_check.log'} "
          f"({report['total_s']:.0f} s)")
    bad = [s["name"] for s in report["steps"] if s["status"] == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
