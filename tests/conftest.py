"""Shared fixtures: the real catalog snapshot shipped inside the package (so the tests run on a
fresh clone without ../shared), a built smoke dataset, and a builder for tiny percent-format
notebooks the pipeline runner can execute."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

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
def real_catalog() -> Path:
    """The NASA Exoplanet Archive PSCompPars snapshot shipped with the package (real planets)."""
    from astrobio_lib.data.catalog import SNAPSHOT_PATH

    assert SNAPSHOT_PATH.is_file(), f"the shipped snapshot {SNAPSHOT_PATH} is missing from the checkout"
    return SNAPSHOT_PATH


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


def full_preset(name: str = "tiny", **kw):
    """A model preset as the model with every modality and its heads (the habitability task's)."""
    from astrobio_lib import tasks
    from astrobio_lib.models.presets import get_preset

    return tasks.get("habitability").model(get_preset(name, **kw))


# the habitability task on the shipped catalog file, at the learning rate its tests were written for
HABITABILITY = {"task": "habitability", "catalog_source": "file", "learning_rate": 3e-4}


def built(values: dict, where: str = "test parameters"):
    """Returns the validated config of ``values`` after building its dataset in ``run_dir/data``
    (what notebook 01 does before training); a second call reuses the build."""
    from astrobio_lib import config
    from astrobio_lib.data.build import build_for_config

    cfg = config.from_mapping(values, where=where)
    build_for_config(cfg)
    return cfg


def pytest_configure(config):
    """One spectra store per test session (unless the caller chose one: `make test` shares its store
    with nbmake), never the user's own cache."""
    import os
    import tempfile

    if not os.environ.get("ASTROBIO_SPECTRA_STORE"):
        os.environ["ASTROBIO_SPECTRA_STORE"] = tempfile.mkdtemp(prefix="astrobio-test-store-")


@pytest.fixture(scope="session")
def smoke_spectra(tmp_path_factory, real_catalog):
    """The smoke run's SIMULATED gas-detection spectra (TauREx; 40 real rocky planets x 10 drawn
    atmospheres, ~60 s on 2 cores when the session's store does not hold them yet)."""
    from astrobio_lib.data import catalog
    from astrobio_lib.data import gas_spectra as gs

    planets, _ = catalog.load_catalog("file", str(real_catalog))
    sel = gs.rocky_planets(planets, 40)
    folder = tmp_path_factory.mktemp("gas") / "gas_spectra"
    ds, _ = gs.build_or_load(folder, sel, 10, seed=0)  # the session's store, a LocalCluster on every core
    assert gs.build_or_load(folder, sel, 10, seed=0)[1]  # the second call generates nothing
    return ds
