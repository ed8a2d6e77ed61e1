"""File-system helpers shared by the pipeline, the dataset build and the checkpoints."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Writes ``data`` to ``path`` so that a crash leaves either the old file or the new one:
    a temporary file beside it, flushed and fsync'ed, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
