"""Launch multi-process training from a notebook: ``torchrun`` as a subprocess whose plain log
lines are streamed as they come (a notebook kernel cannot host several ranks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def write_params(cfg, path: str | Path) -> Path:
    """Writes the flat configuration for ``python -m astrobio_lib.train``."""
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg.flat(), sort_keys=True))
    return path


def run_torchrun(params_path: str | Path, nproc: int) -> int:
    """Runs ``torchrun --nproc_per_node=nproc -m astrobio_lib.train params_path``, printing each
    output line as it arrives; returns the exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "astrobio_lib.train", str(params_path)]
    print("launching:", " ".join(cmd), flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"}) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
        return proc.wait()


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after a checkpoint: the pipeline marks the notebook
    ``interrupted`` (not failed), and the same command continues the run."""
