"""Atomic, verified checkpoints with exact resume.

Each checkpoint is written to a temporary file, fsync'ed and renamed, then recorded with its sha256
in ``checkpoints/manifest.json`` (itself replaced atomically). The last ``keep`` checkpoints and the
best one are kept. Loading verifies the checksum and reads with ``torch.load(weights_only=True)``;
if the newest checkpoint is corrupt or truncated, the previous valid one is used and a warning
says so. Everything stored is tensors and plain Python values (RNG states included), so
``weights_only`` loading works.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from astrobio_lib.fsutil import atomic_write

log = logging.getLogger("astrobio.train")
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that belongs to another configuration."""


def rng_state() -> dict[str, Any]:
    """Returns every RNG state as weights_only-loadable values."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
             "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_json(path: Path, payload: Any) -> None:
    atomic_write(path, json.dumps(payload, indent=1))


def read_manifest(ckpt_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(ckpt_dir) / MANIFEST
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())["checkpoints"]
    except (ValueError, KeyError):
        log.warning("%s is unreadable: looking for checkpoint files directly", path)
        return [{"file": p.name, "step": int(p.stem.split("_")[-1]), "sha256": None, "best": False}
                for p in sorted(Path(ckpt_dir).glob("step_*.pt"))]


def save(ckpt_dir: str | Path, step: int, state: dict[str, Any], keep: int = 5, best: bool = False) -> Path:
    """Writes ``state`` atomically as ``step_NNNNNNNN.pt``, records it, prunes old ones; returns
    the path."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step:08d}.pt"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    record(ckpt_dir, path.name, step, keep, best, sha256=_sha256(path))
    return path


def record(ckpt_dir: str | Path, name: str, step: int, keep: int, best: bool, sha256: Optional[str] = None,
           sharded: bool = False) -> None:
    """Adds a written checkpoint (a file, or a sharded DCP directory) to the manifest, then keeps
    the last ``keep`` plus the best and deletes the others."""
    import shutil

    ckpt_dir = Path(ckpt_dir)
    entries = [e for e in read_manifest(ckpt_dir) if e["file"] != name]
    if best:
        for e in entries:
            e["best"] = False
    entry = {"file": name, "step": step, "sha256": sha256, "best": best, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if sharded:
        entry["sharded"] = True
    entries.append(entry)
    entries.sort(key=lambda e: e["step"])
    recent = {e["file"] for e in entries[-keep:]}
    kept = [e for e in entries if e["file"] in recent or e.get("best")]
    _atomic_json(ckpt_dir / MANIFEST, {"checkpoints": kept})
    for e in entries:
        if e not in kept:
            target = ckpt_dir / e["file"]
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def load_latest(ckpt_dir: str | Path, path: Optional[str | Path] = None) -> Optional[tuple[dict[str, Any], Path]]:
    """Returns (state, path) of the newest valid checkpoint (or of ``path``), or None when there
    is none. A corrupt newest checkpoint is skipped with a warning naming it.

    Raises:
        CheckpointError: ``path`` was given and cannot be loaded.
    """
    if path is not None:
        path = Path(path)
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as exc:
            raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc})") from exc
    ckpt_dir = Path(ckpt_dir)
    entries = sorted(read_manifest(ckpt_dir), key=lambda e: e["step"], reverse=True)
    for i, e in enumerate(entries):
        p = ckpt_dir / e["file"]
        problem = None
        if not p.exists():
            problem = "missing"
        elif e.get("sha256") and _sha256(p) != e["sha256"]:
            problem = "sha256 mismatch (truncated or corrupt)"
        else:
            try:
                state = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as exc:
                problem = f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
        if problem:
            nxt = entries[i + 1]["file"] if i + 1 < len(entries) else None
            log.warning("checkpoint %s is %s: %s", e["file"], problem,
                        f"falling back to the previous one, {nxt}" if nxt else "no earlier checkpoint to fall back to")
            continue
        return state, p
    return None


def incompatible_keys(saved: dict[str, Any], current: dict[str, Any], structural: tuple[str, ...]) -> dict[str, tuple]:
    """Returns {key: (saved, current)} for the structural keys that differ."""
    return {k: (saved.get(k), current.get(k)) for k in structural if saved.get(k) != current.get(k)}
