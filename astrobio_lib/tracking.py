"""Logging setup, metrics JSONL, memory stats, and Weights & Biases (online / offline / disabled).

Secrets: W&B reads its key from ``WANDB_API_KEY`` itself; nothing here reads, logs or stores it.
Metrics records hold numbers and short strings only.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from astrobio_lib.fsutil import atomic_write

log = logging.getLogger("astrobio.train")


def setup_logging(run_dir: str | Path, rank: int = 0) -> Callable[[], None]:
    """Plain, flushed log lines to stdout and ``run_dir/run.log`` (rank 0; other ranks log
    warnings only), idempotent. Returns a function that puts the ``astrobio`` logger back as it was
    (so a training run inside a longer process — a kernel, a pipeline, a test session — leaves no
    handler or propagation change behind)."""
    root = logging.getLogger("astrobio")
    before = (list(root.handlers), root.level, root.propagate)

    def restore() -> None:
        for h in root.handlers:
            if h not in before[0]:
                h.flush()
                if isinstance(h, logging.FileHandler):
                    h.close()
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        root.propagate = before[2]

    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    root.propagate = False
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}] %(message)s", "%Y-%m-%d %H:%M:%S")
    path = str(Path(run_dir) / "run.log")
    if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in root.handlers):
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        if "ipykernel" in sys.modules:  # a notebook report: every tenth of the run and warnings; run.log has all
            sh.addFilter(lambda r: r.levelno >= logging.WARNING or getattr(r, "milestone", False))
        root.addHandler(sh)
    for h in root.handlers:
        h.flush()
    return restore


class MetricsLog:
    """Append-only ``metrics.jsonl``; :meth:`truncate_after` drops records past a resumed step so
    a resumed run's trajectory joins the interrupted one without duplicates."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> int:
        """Keeps records with ``step <= step``; returns how many were dropped."""
        if not self.enabled or not self.path.exists():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                dropped += 1  # a line cut by a crash
                continue
            if rec.get("step", 0) <= step:
                kept.append(line)
            else:
                dropped += 1
        atomic_write(self.path, "".join(k + "\n" for k in kept))
        return dropped

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
            fh.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def memory_stats(devices: Optional[list[int]] = None) -> dict[str, float]:
    """Returns CPU RSS peak (GB) and, per visible GPU, allocated / reserved / peak (GB) and the
    peak as a fraction of the device's memory."""
    import torch

    stats = {"cpu_rss_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}
    if torch.cuda.is_available():
        for i in devices if devices is not None else range(torch.cuda.device_count()):
            total = torch.cuda.get_device_properties(i).total_memory
            stats[f"gpu{i}_allocated_gb"] = torch.cuda.memory_allocated(i) / 1e9
            stats[f"gpu{i}_reserved_gb"] = torch.cuda.memory_reserved(i) / 1e9
            stats[f"gpu{i}_peak_gb"] = torch.cuda.max_memory_allocated(i) / 1e9
            stats[f"gpu{i}_peak_fraction"] = torch.cuda.max_memory_allocated(i) / total
    return stats


def memory_alerts(stats: dict[str, float], threshold: float) -> list[str]:
    """Returns an alert per device whose peak exceeds ``threshold`` of its memory (per device:
    two 24 GB GPUs are two 24 GB budgets, not one of 48)."""
    return [f"{k.split('_')[0]} peak {stats[k.replace('peak_fraction', 'peak_gb')]:.2f} GB = "
            f"{100 * v:.0f}% of the device (alert at {100 * threshold:.0f}%)"
            for k, v in stats.items() if k.endswith("peak_fraction") and v > threshold]


class WandbRun:
    """A W&B run when ``mode`` allows (``WANDB_MODE`` in the environment wins), else a no-op."""

    def __init__(self, mode: str, run_dir: str | Path, config: dict[str, Any], name: str):
        self.run = None
        mode = os.environ.get("WANDB_MODE", mode)
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            log.warning("wandb not installed: metrics go to metrics.jsonl only")
            return
        self.run = wandb.init(project="astrobio", name=name, dir=str(run_dir), mode=mode, config=config,
                              resume="allow", id=name.replace("/", "-"), settings=wandb.Settings(silent=True))

    def log(self, record: dict[str, Any], step: int) -> None:
        if self.run is not None:
            try:
                self.run.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
            except Exception as exc:  # noqa: BLE001 - W&B must never stop training (see _lost)
                self._lost(exc)

    def finish(self) -> None:
        if self.run is not None:
            try:
                self.run.finish()
            except Exception as exc:  # noqa: BLE001
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """W&B's service process is gone — killed by the SIGTERM of a preemption that reached the whole
        process group, or crashed: training goes on (and checkpoints), metrics go to metrics.jsonl only."""
        log.warning("Weights & Biases stopped answering (%s: %s): metrics go to metrics.jsonl only from here on",
                    type(exc).__name__, exc)
        self.run = None
