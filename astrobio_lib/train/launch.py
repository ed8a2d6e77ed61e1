"""Launch multi-process training from a notebook: ``torchrun`` as a subprocess whose plain log
lines are streamed as they come (a notebook kernel cannot host several ranks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml


def write_params(cfg, path: str | Path, built_with: Optional[dict[str, Any]] = None) -> Path:
    """Writes the flat configuration for ``python -m astrobio_lib.train``, atomically; ``built_with`` (the
    settings the run's data was actually made with, from its manifest) replaces the notebook's defaults
    for the keys it does not declare, so the file says what the run trains on."""
    from astrobio_lib.fsutil import atomic_write

    path = Path(path)
    atomic_write(path, yaml.safe_dump({**cfg.flat(), **(built_with or {})}, sort_keys=True))
    return path


def run_torchrun(params_path: str | Path, nproc: int) -> int:
    """Runs ``torchrun --nproc_per_node=nproc -m astrobio_lib.train params_path``, printing each
    output line as it arrives; returns the exit code. SIGTERM / SIGINT to this process (a notebook
    kernel) are passed on to torchrun, which passes them to its ranks, and this process keeps waiting
    until they have checkpointed and exited (it does not die under them)."""
    import contextlib
    import os
    import signal
    import threading

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "astrobio_lib.train", str(params_path)]
    print("launching:", " ".join(cmd), flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        previous = {}

        def forward(signum, frame):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, forward)
        try:
            for line in proc.stdout:
                print(line, end="", flush=True)
            return proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after a checkpoint: the pipeline marks the notebook
    ``interrupted`` (not failed), and the same command continues the run."""
