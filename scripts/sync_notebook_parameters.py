"""Rewrites the parameters cell of every notebook from the configuration: each key a notebook declares
gets the configuration's type, default (the CPU smoke values) and help. Run it after changing a field
in ``astrobio_lib/config.py``; ``tests/test_config.py`` fails when a cell and the configuration differ.

    .venv/bin/python scripts/sync_notebook_parameters.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from astrobio_lib.config import parameters_cell

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL = re.compile(r'(# %% tags=\["parameters"\]\n)(.*?)(\n\n# %%)', re.S)


def declared_keys(cell: str) -> list[str]:
    """The keys a parameters cell declares, in its order."""
    return [line.split(":", 1)[0].strip() for line in cell.splitlines() if line.strip() and not line.startswith("#")]


def sync(path: Path) -> bool:
    """Rewrites ``path``'s parameters cell; returns whether it changed."""
    text = path.read_text()
    match = CELL.search(text)
    if match is None:
        raise SystemExit(f"{path}: no parameters cell")
    new = text[:match.start(2)] + parameters_cell(declared_keys(match.group(2))) + text[match.end(2):]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = [p.name for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")) if sync(p)]
    print("rewritten: " + (", ".join(changed) or "nothing (every cell matches the configuration)"))
    sys.exit(0)
