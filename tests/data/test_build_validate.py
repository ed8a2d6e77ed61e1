import json
import shutil
import time

import numpy as np
import pytest
import torch

from astrobio_lib.config import DataConfig
from astrobio_lib.data import catalog
from astrobio_lib.data.build import build_dataset
from astrobio_lib.data.loader import Collate, PlanetDataset, make_loader
from astrobio_lib.data.validate import DataValidationError, validate_catalog, validate_dataset
from astrobio_lib.fsutil import sha256_file

from ..conftest import full_preset

CFG = DataConfig(n_planets=48, label_mc_samples=32, shard_size=16)


@pytest.fixture(scope="module")
def real_catalog(request):
    path = request.getfixturevalue("real_catalog")
    return catalog.load_catalog("file", str(path))


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_catalog):
    planets, prov = real_catalog
    out = tmp_path_factory.mktemp("data")
    t0 = time.perf_counter()
    manifest = build_dataset(planets, prov, CFG, seed=0, out_dir=out)
    return out, manifest, time.perf_counter() - t0


@pytest.fixture
def copy(built, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(built[0], out)
    return out


def _rewrite_shard(data_dir, edit, index=0):
    """Applies ``edit`` to a shard and records its new checksum, so the content checks (not
    the checksum check) must catch the fault."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    entry = manifest["shards"][index]
    shard = torch.load(data_dir / entry["file"], weights_only=True)
    edit(shard)
    torch.save(shard, data_dir / entry["file"])
    entry["sha256"] = sha256_file(data_dir / entry["file"])
    (data_dir / "manifest.json").write_text(json.dumps(manifest))


def test_build_is_complete_fast_and_reused(built, real_catalog):
    out, manifest, seconds = built
    assert seconds < 180
    assert manifest["coverage"]["planets"] >= 48  # at least n_planets: positives are always kept
    assert manifest["coverage"]["climate"] > 0 and manifest["coverage"]["spectrum"] > 0
    assert manifest["modalities"]["climate"]["synthetic"] is True  # assumed atmospheres
    assert manifest["modalities"]["catalog"]["synthetic"] is False
    assert manifest["prevalence"]["subset_enriched"] is True
    assert validate_dataset(out).fatal == []
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = build_dataset(*real_catalog, CFG, seed=0, out_dir=out)
    assert again["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_rebuild_repairs_a_corrupt_shard(copy, real_catalog):
    (copy / "shard_00001.pt").write_bytes(b"truncated")
    assert "checksum" in validate_dataset(copy).checks("fatal")
    manifest = build_dataset(*real_catalog, CFG, seed=0, out_dir=copy)
    assert manifest["reused"] is False and validate_dataset(copy).fatal == []


@pytest.mark.parametrize("fault, check", [
    ("nan", "nan_inf"), ("inf", "nan_inf"), ("cube_shape", "datacube_shape"),
    ("duplicate", "duplicates"), ("host_in_two_splits", "split_leakage"), ("missing_file", "missing_file"),
    ("dangling_edge", "graph_sanity"),
])
def test_each_fault_is_named_and_refused(copy, fault, check):
    if fault == "nan":
        _rewrite_shard(copy, lambda s: s["catalog"].__setitem__((0, 0), float("nan")))
    elif fault == "inf":
        _rewrite_shard(copy, lambda s: s["spectrum"].__setitem__((int(s["has_spectrum"].nonzero()[0]), 3), float("inf")))
    elif fault == "cube_shape":
        def reshape(s):
            s["climate"] = s["climate"][..., :16, :]
        for i in range(3):
            _rewrite_shard(copy, reshape, index=i)
    elif fault in ("duplicate", "host_in_two_splits"):
        manifest = json.loads((copy / "manifest.json").read_text())
        recs = manifest["records"]
        if fault == "duplicate":
            recs[1]["pl_name"] = recs[0]["pl_name"]
        else:
            other = next(r for r in recs if r["split"] != recs[0]["split"])
            other["hostname"] = recs[0]["hostname"]
        (copy / "manifest.json").write_text(json.dumps(manifest))
    elif fault == "missing_file":
        (copy / "shard_00002.pt").unlink()
    elif fault == "dangling_edge":
        graphs = torch.load(copy / "graphs.pt", weights_only=True)
        graphs["aerobic_edge_index"][1, 0] = 10_000
        torch.save(graphs, copy / "graphs.pt")
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["graphs"]["sha256"] = sha256_file(copy / "graphs.pt")
        (copy / "manifest.json").write_text(json.dumps(manifest))
    report = validate_dataset(copy)
    assert check in report.checks("fatal"), report.to_frame()
    finding = next(f for f in report.fatal if f.check == check)
    assert finding.fix and (finding.affected or finding.count)
    with pytest.raises(DataValidationError, match=check):
        PlanetDataset(copy)


def test_negative_radius_in_the_catalog_stops_the_build(real_catalog, tmp_path):
    planets, prov = real_catalog
    bad = planets.copy()
    bad.loc[bad.index[3], "pl_rade"] = -1.0
    report = validate_catalog(bad)
    finding = next(f for f in report.fatal if f.check == "physical_range")
    assert bad.loc[bad.index[3], "pl_name"] in finding.affected
    with pytest.raises(DataValidationError, match="pl_rade <= 0"):
        build_dataset(bad, prov, CFG, seed=0, out_dir=tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_duplicate_and_inf_in_the_catalog_are_named(real_catalog):
    planets, _ = real_catalog
    bad = planets.copy()
    bad.loc[bad.index[5], "pl_name"] = bad.loc[bad.index[4], "pl_name"]
    bad.loc[bad.index[7], "st_met"] = np.inf
    report = validate_catalog(bad)
    assert {"duplicates", "nan_inf"} <= report.checks("fatal")


def test_missing_manifest_is_refused_with_the_fix(tmp_path):
    with pytest.raises(DataValidationError, match="build the dataset first"):
        PlanetDataset(tmp_path)


def test_loader_batches_match_the_model_contract(built):
    out, manifest, _ = built
    train = PlanetDataset(out, "train")
    test = PlanetDataset(out, "test")
    names_train = {train.name(train[i]) for i in range(len(train))}
    names_test = {test.name(test[i]) for i in range(len(test))}
    assert names_train.isdisjoint(names_test)
    batch = next(iter(make_loader(train, batch_size=8, seed=0)))
    assert batch["catalog"].shape == (8, 16) and batch["climate"].shape == (8, 2, 10, 32, 64)
    assert batch["graph"].num_graphs == 8 and batch["text_ids"].shape[1] == CFG.text_max_len
    order = [b["record"].tolist() for b in make_loader(train, batch_size=8, seed=5)]
    assert order == [b["record"].tolist() for b in make_loader(train, batch_size=8, seed=5)]
    assert sorted(sum(order, [])) == sorted(train.tensors["record"][train.indices].tolist())


def test_loader_with_worker_processes(built):
    out, _, _ = built
    ds = PlanetDataset(out)
    a = [b["record"] for b in make_loader(ds, batch_size=16, shuffle=False, num_workers=2)]
    b = [b["record"] for b in make_loader(ds, batch_size=16, shuffle=False, num_workers=0)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert isinstance(make_loader(ds, 4).collate_fn, Collate)


def test_tiny_model_on_a_real_batch(built):
    """Models issue, done-when 2: forward + backward of the tiny model on a real batch."""
    from astrobio_lib.models.fusion import build_model

    out, _, _ = built
    ds = PlanetDataset(out)
    idx = [i for i in range(len(ds)) if ds[i]["climate"] is not None][:2] + list(range(6))
    batch = Collate(ds.graphs)([ds[i] for i in idx])
    assert batch["has_climate"].any() and batch["has_spectrum"].any()
    model = build_model(full_preset("tiny"), seed=0)
    out = model(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
