"""Shared fixtures: the real catalog snapshot (skipped cleanly when ../shared is absent) and a
builder for tiny percent-format notebooks the pipeline runner can execute."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_CATALOG = REPO.parent / "shared" / "data" / "pscomppars_2025-12-15.csv"

NOTEBOOK_HEADER = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
"""


@pytest.fixture(scope="session")
def shared_catalog() -> Path:
    path = Path(os.environ.get("ASTROBIO_CATALOG") or SHARED_CATALOG)
    if not path.is_file():
        pytest.skip(f"real catalog snapshot not found at {path} (../shared/data absent)")
    return path


def make_notebook(directory: Path, name: str, body: str = "", params: str = "") -> Path:
    """Writes ``directory/name.py``: a parameters cell (``run_dir`` plus ``params``), ``body`` as
    a code cell, and the completion-marker cell."""
    directory.mkdir(parents=True, exist_ok=True)
    params_cell = 'run_dir: str = "../outputs/notebook_defaults"  # run folder\n' + textwrap.dedent(params)
    text = NOTEBOOK_HEADER + f"""
# %% [markdown]
# # {name}

# %% tags=["parameters"]
{params_cell}
# %%
{textwrap.dedent(body) or 'pass'}

# %% tags=["completion-marker"]
from astrobio_lib.report import completion_marker
completion_marker("{name}")
"""
    path = directory / f"{name}.py"
    path.write_text(text)
    return path
