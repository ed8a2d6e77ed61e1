"""The shared spectra store (issue 24): reused across runs, extended by new chunks only, resumable after
SIGKILL, corrupt chunks named and regenerated, Dask generation equal to in-process generation, and
generation callable from a script without a __main__ guard. Sets are tiny: 2 planets x a few
atmospheres (TauREx's tables load once per process: ~13 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import spectra_store as st

from ..conftest import REPO


@pytest.fixture(scope="module")
def rows(real_catalog):
    from astrobio_lib.data import catalog

    planets, _ = catalog.load_catalog("snapshot")
    return gs.rocky_planets(planets, 2)


class Counting:
    """Counts the atmospheres compute_chunk is asked for (in-process generation)."""

    def __init__(self, monkeypatch):
        self.ranges = []
        real = st.compute_chunk

        def counted(row, key, seed, start, stop):
            self.ranges.append((row["pl_name"], start, stop))
            return real(row, key, seed, start, stop)

        monkeypatch.setattr(st, "compute_chunk", counted)


def _arrays(ds: gs.GasSpectra) -> dict:
    return {"depth": np.asarray(ds.depth), "present": ds.present, "vmr": ds.log10_vmr, "t": ds.temperature_k,
            "sigma": ds.sigma_transit, "planet": ds.planet}


def _equal(a: gs.GasSpectra, b: gs.GasSpectra) -> None:
    x, y = _arrays(a), _arrays(b)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_a_second_set_reuses_the_store_and_more_atmospheres_generate_only_the_new_chunks(tmp_path, rows, monkeypatch,
                                                                                          caplog):
    import re

    calls = Counting(monkeypatch)
    store = tmp_path / "store"
    with caplog.at_level("INFO", logger="astrobio.spectra"):
        first, reused = gs.build_or_load(tmp_path / "run1" / "gas_spectra", rows, 3, 0, store=store, workers=0)
    assert not reused and len(calls.ranges) == 2 and first.manifest["generation"]["spectra_generated"] == 6
    progress = [r.getMessage() for r in caplog.records if re.match(r"spectra \d+/6 \(\d+%\) \| [\d.]+ spectra/s \| ETA",
                                                                   r.getMessage())]
    assert progress and progress[-1].startswith("spectra 6/6 (100%)")  # progress with rate and ETA, in the log
    calls.ranges.clear()
    with caplog.at_level("INFO", logger="astrobio.spectra"):
        second, reused = gs.build_or_load(tmp_path / "run2" / "gas_spectra", rows, 3, 0, store=store, workers=0)
    assert reused and calls.ranges == [] and second.manifest["cache_key"] == first.manifest["cache_key"]
    _equal(first, second)
    assert second.manifest["store"] == str(store / "v1")  # the run records the store it used, and each chunk
    assert all(Path(c["path"]).is_relative_to(store) for c in second.manifest["chunks"])
    # more atmospheres per planet: only atmospheres 3 and 4 of each planet are computed
    more, reused = gs.build_or_load(tmp_path / "run3" / "gas_spectra", rows, 5, 0, store=store, workers=0)
    assert not reused and sorted(r[1:] for r in calls.ranges) == [(3, 5), (3, 5)]
    keep = np.concatenate([np.flatnonzero(more.planet == p)[:3] for p in range(2)])
    np.testing.assert_array_equal(np.asarray(more.depth)[keep], np.asarray(first.depth))
    assert more.manifest["cache_key"] != first.manifest["cache_key"]
    # the per-planet atmosphere index: which chunks hold which planet's atmospheres
    index = more.manifest["planets_index"]
    assert [e["atmospheres"] for e in index] == [5, 5] and all(len(e["chunks"]) == 2 for e in index)
    # fewer planets reuse the same entries: no generation at all
    calls.ranges.clear()
    _, reused = gs.build_or_load(tmp_path / "run4" / "gas_spectra", rows.head(1), 5, 0, store=store, workers=0)
    assert reused and calls.ranges == []


def test_a_corrupt_chunk_is_named_then_regenerated(tmp_path, rows, monkeypatch, caplog):
    store = tmp_path / "store"
    ds, _ = gs.build_or_load(tmp_path / "run" / "gas_spectra", rows, 2, 0, store=store, workers=0)
    reference = np.asarray(ds.depth).copy()
    chunk = Path(ds.manifest["chunks"][1]["path"])
    data = bytearray(chunk.read_bytes())
    data[-10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    broken = gs.load(tmp_path / "run" / "gas_spectra")
    with pytest.raises(st.StoreCorrupt, match=f"{chunk.name} is corrupt: sha256 .* was recorded — run 01"):
        np.asarray(broken.depth)
    calls = Counting(monkeypatch)
    with caplog.at_level("WARNING", logger="astrobio.spectra"):
        again, reused = gs.build_or_load(tmp_path / "run" / "gas_spectra", rows, 2, 0, store=store, workers=0)
    assert not reused and len(calls.ranges) == 1  # only that chunk
    assert any(chunk.name in r.getMessage() and "regenerated" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(np.asarray(again.depth), reference)


def test_a_corrupt_or_incomplete_run_set_is_named(tmp_path, rows):
    folder = tmp_path / "run" / "gas_spectra"
    gs.build_or_load(folder, rows, 1, 0, store=tmp_path / "store", workers=0)
    truths = next(folder.glob("truths-*.npz"))
    truths.write_bytes(truths.read_bytes()[:-40])
    with pytest.raises(gs.SpectraCorrupt, match=f"{truths.name} is corrupt: sha256 .* run 01_data_validation again"):
        gs.load(folder)
    (folder / "manifest.json").write_text('{"format": 2, ')
    with pytest.raises(gs.SpectraCorrupt, match="manifest.json is unreadable"):
        gs.load(folder)


def test_a_crash_while_a_set_is_replaced_leaves_the_previous_set_whole(tmp_path, rows, monkeypatch):
    """Issue 23, finding 1: a writer killed between its steps (here: after the new set's files, before its
    manifest) never leaves a manifest that names other data than it describes."""
    folder = tmp_path / "run" / "gas_spectra"
    old, _ = gs.build_or_load(folder, rows, 2, 0, store=tmp_path / "store", workers=0)
    real = gs.atomic_write

    def crash_on_manifest(path, data, *a, **k):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt("killed before the manifest was published")
        return real(path, data, *a, **k)

    monkeypatch.setattr(gs, "atomic_write", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        gs.build_or_load(folder, rows, 3, 0, store=tmp_path / "store", workers=0)
    monkeypatch.setattr(gs, "atomic_write", real)
    after = gs.load(folder)  # the previous set, whole and verified
    assert after.manifest["cache_key"] == old.manifest["cache_key"] and len(after.depth) == 4
    _equal(after, old)


def test_exported_spectra_npz_sets_keep_loading_and_are_checked(tmp_path, rows):
    ds, _ = gs.build_or_load(tmp_path / "run" / "gas_spectra", rows, 2, 0, store=tmp_path / "store", workers=0)
    out = gs.save(ds, tmp_path / "export", key="k")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "planets.parquet", "spectra.npz"]
    _equal(gs.load(out), ds)
    npz = out / "spectra.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(gs.SpectraCorrupt, match="spectra.npz is corrupt"):
        gs.load(out)


@pytest.mark.slow
def test_sigkill_during_generation_keeps_finished_chunks_and_the_rerun_equals_an_uninterrupted_build(tmp_path, rows):
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "astrobio_lib.data.gas_spectra", "generate", "--gas-planets", "2", "--atmospheres",
           "24", "--workers", "0", "--store", str(store)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(store.rglob("a*.npz"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name for p in store.rglob("a*.npz")}
    assert 2 <= len(kept) < 6, kept  # some chunks finished, not all
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["spectra_generated"] == 48 - 8 * len(kept)  # only what was missing
    assert not list(store.rglob("*.tmp"))
    ds, reused = gs.build_or_load(tmp_path / "run" / "gas_spectra", rows, 24, 0, store=store, workers=0)
    assert reused
    ref, _ = gs.build_or_load(tmp_path / "ref" / "gas_spectra", rows, 24, 0, store=tmp_path / "fresh", workers=0)
    _equal(ds, ref)


@pytest.mark.slow
def test_dask_local_cluster_from_a_script_without_main_guard_equals_in_process(tmp_path, rows):
    """Generation on a 2-worker LocalCluster, called at the top level of a script (no __main__ guard),
    gives exactly the in-process spectra."""
    script = tmp_path / "no_guard.py"
    script.write_text(
        "from astrobio_lib.data import catalog, gas_spectra as gs\n"
        "planets, _ = catalog.load_catalog('snapshot')\n"
        f"ds, _ = gs.build_or_load({str(tmp_path / 'dask' / 'set')!r}, gs.rocky_planets(planets, 2), 3, 0,\n"
        f"                         store={str(tmp_path / 'dask_store')!r}, workers=2)\n"
        "print('engine', ds.manifest['generation']['engine'], ds.manifest['generation']['workers'])\n")
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "engine dask LocalCluster 2" in res.stdout
    dask = gs.load(tmp_path / "dask" / "set")
    local, _ = gs.build_or_load(tmp_path / "local" / "set", rows, 3, 0, store=tmp_path / "local_store", workers=0)
    _equal(dask, local)
