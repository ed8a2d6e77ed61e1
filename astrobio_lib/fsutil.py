"""File-system helpers shared by the pipeline, the dataset build and the checkpoints: atomic
writes that leave nothing behind on failure, a clear error for a full disk, and a run lock with
exactly one holder."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import IO, Any, Iterator, Optional

log = logging.getLogger("astrobio.fs")


class DiskFullError(OSError):
    """A write failed for lack of space; the message names the path, the bytes and what was kept."""


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunFolderError(RuntimeError):
    """A run folder (or a folder inside it) the run cannot use: not writable, or a file where a folder
    belongs; the message names the path and what to do."""


def usable_folder(path: str | Path, what: str) -> Path:
    """Creates ``path`` (a folder of a run) and checks it can be written.

    Raises:
        RunFolderError: a file is in the way, or the file system refuses (read-only, permissions).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} exists and is not a folder: the run keeps its {what} there — move that file away "
                             f"(or use another run folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"{path} is not writable ({exc.strerror}): choose another run folder, or make it "
                             f"writable") from exc
    return path


def sha256_file(path: str | Path, gunzip: bool = False) -> str:
    """Returns the hex sha256 of a file, read in 1 MiB chunks — of its decompressed content with
    ``gunzip`` (so a shipped ``.csv.gz`` has the sha256 of the CSV it holds)."""
    import gzip
    import hashlib

    h = hashlib.sha256()
    with (gzip.open if gunzip else open)(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def temp_path(path: str | Path) -> Path:
    """Returns a temporary name beside ``path`` that no other writer uses (pid + random suffix)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def free_bytes(path: str | Path) -> int:
    """Returns the free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full_error(path: str | Path, needed: Optional[int], exc: BaseException, kept: str) -> DiskFullError:
    """Returns the error to raise when a write to ``path`` ran out of space."""
    need = f"{needed / 1e6:.1f} MB needed, " if needed else ""
    return DiskFullError(errno.ENOSPC, f"no space left writing {path} ({need}{free_bytes(path) / 1e6:.1f} MB free "
                                       f"on its disk); {kept}. Free space (or move the run folder) and run the "
                                       f"same command again. [{exc}]")


@contextlib.contextmanager
def atomic_open(path: str | Path, kept: str = "the previous version is unchanged",
                needed: Optional[int] = None) -> Iterator[IO[bytes]]:
    """Yields a binary file that replaces ``path`` atomically when the block ends without error:
    a uniquely named temporary file beside it, flushed and fsync'ed, then renamed. On any error
    the temporary file is removed, ``path`` is untouched, and a full disk raises
    :class:`DiskFullError` naming the path and the bytes."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, DiskFullError):
            raise disk_full_error(path, needed, exc, kept) from exc
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str, kept: str = "the previous version is unchanged") -> None:
    """Writes ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_open(path, kept=kept, needed=len(payload)) as fh:
        fh.write(payload)


def fsync_dir(path: str | Path) -> None:
    """Makes a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run folder (``<run>/<name>``), held with ``fcntl.flock`` on the lock file:
    the kernel gives it to exactly one process and takes it back when that process dies, so a lock
    left by a killed process is free again without anyone deleting it. The holder's pid, host, start
    time and command are written into the file; a second process is refused naming them. After taking
    the lock a process checks that the file it locked is still the one at the path (a releasing holder
    unlinks it): otherwise it tries again, so two processes never hold two files of one name. A lock
    whose recorded holder is gone is taken over and :attr:`took_over` names it (the caller logs it).
    ``flock`` is local to a machine: on a network file system shared by several hosts, keep one run
    folder per host."""

    def __init__(self, directory: str | Path, name: str = "run.lock", what: str = "run"):
        self.path = Path(directory) / name
        self.what = what
        self.held = False
        self.took_over: Optional[dict[str, Any]] = None
        self._fd: Optional[int] = None

    def holder(self) -> Optional[dict[str, Any]]:
        try:
            text = self.path.read_text()
            return json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        """Takes the lock or raises :class:`RunLockedError`; a stale holder is recorded in
        :attr:`took_over` (and logged)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": dt.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)[:300]}
        for _ in range(50):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                held = self.holder() or {}
                if held.get("pid") == me["pid"] and held.get("host") == me["host"]:
                    raise RunLockedError(f"{self.path} is already held by this process") from None
                raise RunLockedError(
                    f"{self.path.parent} is in use by another {self.what}: pid {held.get('pid', '?')} on "
                    f"{held.get('host', '?')} since {held.get('started', '?')} ({held.get('command', '')}). Wait for "
                    f"it, stop it, or use another run name") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released (and unlinked) it between our open and our flock: again
                os.close(fd)
                continue
            previous = self.holder()
            if previous and previous.get("pid") != me["pid"]:
                self.took_over = previous
                log.warning("taking over a stale lock %s of process %s on %s (started %s), which is gone",
                            self.path, previous.get("pid"), previous.get("host"), previous.get("started"))
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            self._fd, self.held = fd, True
            return self
        raise RunLockedError(f"could not take {self.path}: it keeps being replaced; another {self.what} is starting")

    def release(self) -> None:
        if self.held and self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # while still holding it: a waiter sees the inode change and retries
            os.close(self._fd)
        self._fd, self.held = None, False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temps(directory: str | Path) -> int:
    """Deletes temporary files (``.<name>.<pid>.<hex>.tmp``) left in ``directory`` by dead writers;
    returns how many were removed."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for tmp in directory.glob(".*.tmp"):
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue  # a write in progress
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed += 1
    return removed
