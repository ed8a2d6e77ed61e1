"""Train state and checkpointer: the one module that writes and reads checkpoints.

:class:`TrainState` is the explicit set of stateful parts of a run — model (or, once adapters
exist, only what trains), optimizer, scheduler, grad scaler, data position, counters, RNG states
and the configuration it was written with. :class:`Checkpointer` saves and loads it in two formats
with the same guarantees:

- **single file** ``step_NNNNNNNN.pt`` (one process, DDP): written by rank 0 to a uniquely named
  temporary file, fsync'ed, renamed; its sha256 is stored in the manifest *and* in a sidecar
  ``step_NNNNNNNN.pt.sha256``, so a checkpoint can be verified even when the manifest is lost.
  Periodic saves may run in a background thread (``checkpoint_async``): the main thread only
  copies the state to host memory; writing, hashing and publishing happen while training goes on.
- **sharded** ``step_NNNNNNNN.dcp/`` (FSDP2): model shards through ``torch.distributed.checkpoint``
  and each rank's optimizer and extra state as ``rank_R.pt``, written to a temporary directory;
  rank 0 then records the sha256 of every file in ``checksums.json`` inside it, fsyncs and renames
  the directory.

Both are recorded in ``checkpoints/manifest.json`` (replaced atomically); the last ``keep`` plus
the best are kept. Loading takes the newest checkpoint that verifies: a corrupt one is skipped with
a warning naming it and the one used instead. A missing or malformed manifest is rebuilt from the
files present (both formats, verified by their sidecar / ``checksums.json``). If checkpoints exist
but none is valid, loading stops with :class:`CheckpointError` rather than silently restarting
from step 0. Everything stored is tensors and plain Python values, so ``torch.load(...,
weights_only=True)`` reads it.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from astrobio_lib.fsutil import (
    DiskFullError,
    atomic_open,
    atomic_write,
    disk_full_error,
    free_bytes,
    fsync_dir,
    remove_stale_temps,
    sha256_file,
    temp_path,
)
from astrobio_lib.models.adapters import load_trainable_state, trainable_state_dict
from astrobio_lib.train.distributed import unwrap

log = logging.getLogger("astrobio.train")
MANIFEST = "manifest.json"
CHECKSUMS = "checksums.json"  # inside a sharded checkpoint directory


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected, or one that belongs to another configuration."""


# --------------------------------------------------------------------------- RNG


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


# --------------------------------------------------------------------------- train state


@dataclass
class TrainState:
    """The stateful parts of a run; :class:`Checkpointer` saves and restores exactly these."""

    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    order: Any  # train.data_order.ResumableOrder
    config: dict[str, Any]
    scaler: Optional[Any] = None
    counters: dict[str, Any] = field(default_factory=lambda: {
        "step": 0, "samples": 0, "skipped": 0, "nonfinite_in_a_row": 0, "elapsed_s": 0.0, "best_val": None,
        "vals_without_improvement": 0})
    restored_config: Optional[dict[str, Any]] = None  # the configuration of the checkpoint resumed from

    @property
    def step(self) -> int:
        return int(self.counters["step"])

    def meta(self) -> dict[str, Any]:
        """Everything but model and optimizer (small; every rank holds its own)."""
        return {"config": self.config, "counters": dict(self.counters), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "data_order": self.order.state(), "rng": rng_state()}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        self.order.load(meta["data_order"])
        self.counters.update(meta["counters"])
        set_rng_state(meta["rng"])
        self.restored_config = dict(meta["config"])


def _to_host(obj: Any) -> Any:
    """A deep copy whose tensors live in host memory (the snapshot an async save writes)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return copy.deepcopy(obj)


def state_bytes(state: TrainState, optimizer_bytes_per_param: float) -> int:
    """Returns the expected size of one checkpoint: model tensors plus optimizer states."""
    model_bytes = sum(t.numel() * t.element_size() for t in trainable_state_dict(unwrap(state.model)).values()
                      if isinstance(t, torch.Tensor))
    n_params = sum(p.numel() for p in state.model.parameters() if p.requires_grad)
    return int(model_bytes + n_params * optimizer_bytes_per_param)


# --------------------------------------------------------------------------- manifest


def _valid_entry(e: Any) -> bool:
    return (isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("step"), int)
            and not isinstance(e.get("step"), bool) and "/" not in e["file"])


def _step_of(name: str) -> Optional[int]:
    stem = name.split(".")[0]
    digits = stem.split("_")[-1]
    return int(digits) if stem.startswith("step_") and digits.isdigit() else None


def scan_files(ckpt_dir: str | Path) -> list[dict[str, Any]]:
    """Returns manifest entries for the checkpoints present on disk, with the checksum each carries
    (sidecar file or ``checksums.json``; None when it has none)."""
    ckpt_dir = Path(ckpt_dir)
    out = []
    if not ckpt_dir.is_dir():
        return out
    for p in sorted(ckpt_dir.iterdir()):
        step = _step_of(p.name)
        if step is None or p.name.startswith("."):
            continue
        if p.suffix == ".pt" and p.is_file():
            out.append({"file": p.name, "step": step, "sha256": _sidecar(p), "best": False})
        elif p.suffix == ".dcp" and p.is_dir():
            out.append({"file": p.name, "step": step, "sha256": None, "best": False, "sharded": True})
    return out


def read_manifest(ckpt_dir: str | Path, warn: bool = True) -> list[dict[str, Any]]:
    """Returns the checkpoint entries of a run: the manifest's, merged with the checkpoint files
    present on disk that it does not list (a manifest that is missing, malformed, or older than a
    checkpoint published just before a crash loses nothing). Entries whose file is gone are dropped."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / MANIFEST
    listed: list[dict[str, Any]] = []
    problem = None
    if path.exists():
        try:
            raw = json.loads(path.read_text())
            entries = raw["checkpoints"] if isinstance(raw, dict) else None
            if not isinstance(entries, list) or not all(_valid_entry(e) for e in entries):
                problem = "not a list of {file, step} entries"
            else:
                listed = entries
        except (ValueError, KeyError, OSError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
    on_disk = scan_files(ckpt_dir)
    if problem and warn:
        log.warning("checkpoint manifest %s is %s: rebuilt from the %d checkpoint(s) present, each verified by "
                    "its own checksum", path, problem, len(on_disk))
    elif not path.exists() and on_disk and warn:
        log.warning("checkpoint manifest %s is missing: rebuilt from the %d checkpoint(s) present, each verified "
                    "by its own checksum", path, len(on_disk))
    names = {e["file"] for e in listed}
    present = {e["file"] for e in on_disk}
    merged = [e for e in listed if e["file"] in present] + [e for e in on_disk if e["file"] not in names]
    return sorted(merged, key=lambda e: e["step"])


def record(ckpt_dir: str | Path, name: str, step: int, keep: int, best: bool, sha256: Optional[str] = None,
           sharded: bool = False) -> None:
    """Adds a published checkpoint to the manifest, then keeps the last ``keep`` plus the best and
    deletes the others (with their sidecars)."""
    ckpt_dir = Path(ckpt_dir)
    entries = [e for e in read_manifest(ckpt_dir, warn=False) if e["file"] != name]
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
    atomic_write(ckpt_dir / MANIFEST, json.dumps({"checkpoints": kept}, indent=1),
                 kept="the previous manifest is unchanged (the new checkpoint is found from its file)")
    for e in entries:
        if e not in kept:
            target = ckpt_dir / e["file"]
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
                target.with_name(target.name + ".sha256").unlink(missing_ok=True)


def verify(ckpt_dir: str | Path, entry: dict[str, Any]) -> Optional[str]:
    """Returns why a checkpoint is unusable (missing, no checksum, mismatch), or None when it verifies."""
    p = Path(ckpt_dir) / entry["file"]
    if not p.exists():
        return "missing"
    if p.is_dir():
        sums = p / CHECKSUMS
        if not sums.is_file():
            return f"without {CHECKSUMS} (a sharded save that did not finish)"
        try:
            expected = json.loads(sums.read_text())
        except ValueError:
            return f"{CHECKSUMS} unreadable"
        for name, digest in expected.items():
            f = p / name
            if not f.is_file():
                return f"missing its file {name}"
            if sha256_file(f) != digest:
                return f"sha256 mismatch in {name} (truncated or corrupt)"
        return None
    digest = entry.get("sha256")
    if not digest:
        return "without a checksum (no manifest entry, no .sha256 sidecar)"
    if sha256_file(p) != digest:
        return "sha256 mismatch (truncated or corrupt)"
    return None


def load_file(path: str | Path) -> dict[str, Any]:
    """Returns a single-file checkpoint's contents (``weights_only`` loading).

    Raises:
        CheckpointError: it cannot be read.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from exc


# --------------------------------------------------------------------------- checkpointer


class Checkpointer:
    """Saves and loads a :class:`TrainState` in ``ckpt_dir`` (see the module docstring).

    ``info`` is a :class:`astrobio_lib.train.distributed.DistInfo`; ``sharded`` selects the DCP
    format (FSDP2). ``async_save`` writes single-file checkpoints in a background thread.
    """

    def __init__(self, ckpt_dir: str | Path, keep: int = 5, info: Any = None, sharded: bool = False,
                 async_save: bool = False):
        self.dir = Path(ckpt_dir)
        self.keep = keep
        self.info = info
        self.sharded = sharded
        self.async_save = async_save and not sharded
        self.is_main = info is None or info.is_main
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self.last_save_s = 0.0  # wall time of the last full save (what a preemption save would take)
        self.stall_s = 0.0  # time the training loop spent blocked on checkpoints
        self.saves = 0
        if self.is_main and self.dir.is_dir():
            removed = remove_stale_temps(self.dir)
            if removed:
                log.info("removed %d temporary file(s) left in %s by an interrupted save", removed, self.dir)

    # ---- discovery

    def entries(self) -> list[dict[str, Any]]:
        return read_manifest(self.dir)

    def latest_path(self) -> Optional[Path]:
        entries = self.entries()
        return self.dir / entries[-1]["file"] if entries else None

    # ---- saving

    def check_space(self, checkpoint_bytes: int) -> None:
        """Refuses to start when the disk cannot hold ``keep + 2`` checkpoints of this size.

        Raises:
            CheckpointError: not enough free space, naming the bytes needed and free.
        """
        need = checkpoint_bytes * (self.keep + 2)
        self.dir.mkdir(parents=True, exist_ok=True)
        free = free_bytes(self.dir)
        if free < need:
            raise CheckpointError(
                f"not enough disk space for checkpoints in {self.dir}: each is ~{checkpoint_bytes / 1e9:.2f} GB and "
                f"keep_checkpoints={self.keep} (+2 while writing) needs {need / 1e9:.2f} GB, but {free / 1e9:.2f} GB "
                f"are free. Free space, lower keep_checkpoints, or put the run folder on a larger disk.")

    def save(self, state: TrainState, best: bool = False, blocking: bool = False) -> str:
        """Writes a checkpoint of ``state`` at its current step; returns its path.

        A background save is used when the checkpointer is asynchronous and ``blocking`` is False;
        a previous background save is always finished (and its error raised) first.

        Raises:
            astrobio_lib.fsutil.DiskFullError: the disk filled up; the previous checkpoint is valid.
        """
        t0 = time.monotonic()
        self.wait()
        step = state.step
        if self.is_main:  # what the run trains on, readable without torch: 01 and the pipeline guard it
            self.dir.mkdir(parents=True, exist_ok=True)
            record_trained_config(self.dir, state.config)
        if self.sharded:
            path = self._save_sharded(state, best)
        else:
            path = self.dir / f"step_{step:08d}.pt"
            if self.is_main:
                # without a frozen pretrained base (LoRA / QLoRA): it is rebuilt from its checkpoint
                payload = {"model": trainable_state_dict(unwrap(state.model)),
                           "optimizer": state.optimizer.state_dict(), **state.meta()}
                if self.async_save and not blocking:
                    snapshot = _to_host(payload)
                    self._thread = threading.Thread(target=self._write_in_background,
                                                    args=(snapshot, path, step, best), daemon=False,
                                                    name=f"checkpoint-{step}")
                    self._thread.start()
                else:
                    self._write_file(payload, path, step, best)
                    self.last_save_s = time.monotonic() - t0
        self.stall_s += time.monotonic() - t0
        self.saves += 1
        return str(path)

    def _write_in_background(self, payload: dict[str, Any], path: Path, step: int, best: bool) -> None:
        t0 = time.monotonic()
        try:
            self._write_file(payload, path, step, best)
            self.last_save_s = time.monotonic() - t0
        except BaseException as exc:  # raised in the training thread by the next wait()
            self._error = exc

    def wait(self) -> None:
        """Finishes a background save; raises its error, if it had one."""
        if self._thread is not None:
            t0 = time.monotonic()
            self._thread.join()
            self._thread = None
            self.stall_s += time.monotonic() - t0
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _write_file(self, payload: dict[str, Any], path: Path, step: int, best: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        previous = read_manifest(self.dir, warn=False)
        kept = (f"the previous checkpoint {previous[-1]['file']} and the manifest are unchanged" if previous
                else "no checkpoint was written yet")
        digest = hashlib.sha256()

        class _Hashing:  # hash the bytes while they are written: no second read of a large file
            def __init__(self, fh):
                self.fh = fh

            def write(self, b):
                digest.update(b)
                return self.fh.write(b)

            def flush(self):
                self.fh.flush()

        with atomic_open(path, kept=kept) as fh:
            torch.save(payload, _Hashing(fh))
        atomic_write(path.with_name(path.name + ".sha256"), f"{digest.hexdigest()}  {path.name}\n", kept=kept)
        record(self.dir, path.name, step, self.keep, best, sha256=digest.hexdigest())

    def _save_sharded(self, state: TrainState, best: bool) -> Path:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        info = self.info
        path = self.dir / f"step_{state.step:08d}.dcp"
        tmp_name = temp_path(path).name if info.is_main else None
        holder = [tmp_name]
        if info.distributed:
            dist.broadcast_object_list(holder, src=0)
        tmp = self.dir / holder[0]
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            dcp.save({"model": get_model_state_dict(state.model)}, checkpoint_id=str(tmp))
            rank_file = tmp / f"rank_{info.rank}.pt"
            with atomic_open(rank_file) as fh:
                torch.save({"optimizer": state.optimizer.state_dict(), **state.meta()}, fh)
            ok = torch.tensor([1.0])
        except OSError as exc:
            ok = torch.tensor([0.0])
            failure: Optional[OSError] = exc
        else:
            failure = None
        if info.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if failure is None and ok.item() < 1:
            failure = OSError("another rank failed to write its shard")
        if failure is not None:
            if info.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            previous = read_manifest(self.dir, warn=False)
            kept = (f"the previous checkpoint {previous[-1]['file']} is unchanged" if previous
                    else "no checkpoint was written yet")
            if getattr(failure, "errno", None) == errno.ENOSPC:
                raise disk_full_error(tmp, None, failure, kept) from failure
            raise CheckpointError(f"sharded checkpoint {path} could not be written ({failure}); {kept}") from failure
        if info.is_main:
            sums = {}
            for f in sorted(tmp.iterdir()):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                    sums[f.name] = sha256_file(f)
            atomic_write(tmp / CHECKSUMS, json.dumps(sums, indent=1))
            fsync_dir(tmp)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
            fsync_dir(self.dir)
            record(self.dir, path.name, state.step, self.keep, best, sharded=True)
        # every rank must take the same decision on the next preemption save (it is collective):
        # they all keep the slowest rank's time
        duration = torch.tensor([time.monotonic() - t0], dtype=torch.float64)
        if info.distributed:
            dist.all_reduce(duration, op=dist.ReduceOp.MAX)
        self.last_save_s = float(duration)
        return path

    # ---- loading

    def load(self, state: TrainState, path: Optional[str | Path] = None) -> Optional[str]:
        """Restores ``state`` from ``path`` or from the newest valid checkpoint; returns the path
        used, or None when the run has no checkpoint at all.

        Raises:
            CheckpointError: ``path`` cannot be loaded, or checkpoints exist but none is valid
                (the message lists each one and why; nothing is restarted silently).
        """
        if path is not None:
            path = Path(path)
            entry = next((e for e in self.entries() if (self.dir / e["file"]).resolve() == path.resolve()),
                         {"file": path.name, "step": _step_of(path.name) or 0,
                          "sha256": _sidecar(path), "sharded": path.is_dir()})
            problem = verify(path.parent, entry)
            if problem and not (problem.startswith("without a checksum") and path.is_file()):
                raise CheckpointError(f"checkpoint {path} is {problem}: choose another (resume: auto picks the "
                                      f"newest valid one)")
            self._restore(state, path, entry)
            return str(path)
        entries = list(reversed(self.entries()))
        problems = []
        for i, e in enumerate(entries):
            p = self.dir / e["file"]
            problem = verify(self.dir, e)
            if problem is None:
                try:
                    self._restore(state, p, e)
                except ConfigMismatch:
                    raise
                except CheckpointError as exc:
                    problem = f"unreadable ({exc})"
            if problem is None:
                if problems:
                    log.warning("resuming from %s instead of the newer checkpoint(s) above", e["file"])
                return str(p)
            problems.append(f"{e['file']}: {problem}")
            nxt = entries[i + 1]["file"] if i + 1 < len(entries) else None
            log.warning("checkpoint %s is %s: %s", e["file"], problem,
                        f"falling back to the previous one, {nxt}" if nxt else "no earlier checkpoint to fall back to")
        if problems:
            raise CheckpointError(
                f"{len(problems)} checkpoint(s) in {self.dir}, none valid — " + "; ".join(problems)
                + ". Nothing was restarted: move the folder aside to start over (or set resume: never), or point "
                  "resume at a checkpoint you trust.")
        return None

    def _restore(self, state: TrainState, path: Path, entry: dict[str, Any]) -> None:
        if path.is_dir() or entry.get("sharded"):
            if not self.sharded:
                raise CheckpointError(f"{path} is a sharded (FSDP2) checkpoint: resume it with sharding: fsdp2 "
                                      f"(or convert it with load_model_weights)")
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

            try:
                model_state = {"model": get_model_state_dict(state.model)}
                dcp.load(model_state, checkpoint_id=str(path))
                extra = torch.load(path / f"rank_{self.info.rank}.pt", map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CheckpointError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            set_model_state_dict(state.model, model_state["model"])
            state.optimizer.load_state_dict(extra.pop("optimizer"))
            _check_config(extra["config"], state, path)
            state.load_meta(extra)
            return
        if self.sharded:
            raise CheckpointError(f"{path} is a single-file checkpoint but this run is sharded (fsdp2): resume "
                                  f"it with the sharding it was written with")
        payload = load_file(path)
        _check_config(payload["config"], state, path)
        load_trainable_state(unwrap(state.model), payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.load_meta(payload)

    def close(self) -> None:
        self.wait()


def record_trained_config(ckpt_dir: Path, config: dict[str, Any]) -> None:
    """Writes ``checkpoints/trained_config.json`` (the run's recorded configuration, its data's own
    settings and identity included) when it differs from what is there."""
    from astrobio_lib.tasks import TRAINED_CONFIG

    path = Path(ckpt_dir) / TRAINED_CONFIG
    text = json.dumps(config, indent=1, sort_keys=True, default=str)
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, text)


def _sidecar(path: Path) -> Optional[str]:
    side = path.with_name(path.name + ".sha256")
    return side.read_text().split()[0] if side.is_file() and side.read_text().strip() else None


# Identity keys the trainer adds to the configuration it records (they are not parameters): the data
# by content (a changed build or generated set is another experiment) and a pretrained base by content
# (its path may differ between machines).
DERIVED_STRUCTURAL = ("dataset_build_sha256", "llm_base_sha256")


def structural_keys(data_keys: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keys whose change between a checkpoint and its resumed run is refused: every configuration
    key declared ``structural`` (:func:`astrobio_lib.config.keys_by_resume`), the derived identities,
    and the data keys of the run's task."""
    from astrobio_lib.config import keys_by_resume

    return (*keys_by_resume("structural"), *DERIVED_STRUCTURAL, *data_keys)


def safe_keys() -> tuple[str, ...]:
    """The keys that may change on resume (a lower learning rate after a divergence, a longer run): logged."""
    from astrobio_lib.config import keys_by_resume

    return keys_by_resume("safe")


def incompatible_keys(saved: dict[str, Any], current: dict[str, Any], structural: tuple[str, ...]) -> dict[str, tuple]:
    """Returns {key: (saved, current)} for the structural keys that differ; a key absent on one side
    (a checkpoint written before the key existed) counts as its configuration default."""
    from astrobio_lib.config import all_fields

    defaults = {name: info.default for name, info in all_fields().items()}
    pairs = {k: (saved.get(k, defaults.get(k)), current.get(k, defaults.get(k))) for k in structural}
    return {k: pair for k, pair in pairs.items() if pair[0] != pair[1]}


def _check_config(saved: dict[str, Any], state: TrainState, path: Path) -> None:
    from astrobio_lib import tasks

    data_keys = tasks.of(state.config).data_keys if state.config.get("task") in tasks.names() else ()
    diff = incompatible_keys(saved, state.config, structural_keys(data_keys))
    if diff:
        raise ConfigMismatch(
            f"checkpoint {path} was written with another configuration: "
            + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            + ". Restore those values, or start a new run folder (or resume: never).")


class ConfigMismatch(CheckpointError):
    """The checkpoint is valid but belongs to another experiment (never a reason to fall back)."""


def changed_safe_keys(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple]:
    """Returns {key: (saved, current)} for the keys that may change on resume and did."""
    return {k: (saved.get(k), current.get(k)) for k in safe_keys()
            if k in saved and saved.get(k) != current.get(k)}


def load_model_weights(ckpt_dir: str | Path, which: str = "best") -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Returns (model state dict, flat config, path) of a run's best or newest valid checkpoint, in
    either format (a sharded one is consolidated once into ``<name>.consolidated.pt``) — what
    evaluation needs, without an optimizer or a process group.

    Raises:
        FileNotFoundError: the run has no checkpoint.
        CheckpointError: checkpoints exist but none verifies.
    """
    ckpt_dir = Path(ckpt_dir)
    entries = read_manifest(ckpt_dir)
    if not entries:
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: run 03_training for this run first")
    ordered = list(reversed(entries))
    if which == "best":
        ordered.sort(key=lambda e: not e.get("best"))  # stable: the best first, then newest first
    problems = []
    for e in ordered:
        path = ckpt_dir / e["file"]
        problem = verify(ckpt_dir, e)
        if problem:
            problems.append(f"{e['file']}: {problem}")
            log.warning("checkpoint %s is %s: trying the next one", e["file"], problem)
            continue
        if path.is_dir():
            from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

            flat_path = path.with_name(path.stem + ".consolidated.pt")
            if not flat_path.exists():
                tmp = temp_path(flat_path)
                with contextlib.suppress(FileNotFoundError):
                    dcp_to_torch_save(str(path), str(tmp))
                    os.replace(tmp, flat_path)
            model_state = load_file(flat_path)["model"]
            config_flat = load_file(path / "rank_0.pt")["config"]
        else:
            payload = load_file(path)
            model_state, config_flat = payload["model"], payload["config"]
        return model_state, config_flat, path
    raise CheckpointError(f"no valid checkpoint in {ckpt_dir}: " + "; ".join(problems))


__all__ = ["CheckpointError", "ConfigMismatch", "Checkpointer", "TrainState", "DiskFullError", "read_manifest",
           "record", "verify", "load_file", "load_model_weights", "rng_state", "set_rng_state", "DERIVED_STRUCTURAL",
           "structural_keys", "safe_keys", "incompatible_keys", "changed_safe_keys", "state_bytes", "scan_files"]
