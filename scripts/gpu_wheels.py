"""Collects, on this CPU machine, what ``benchmarks/gpu_check.py`` needs that a bare GPU machine lacks,
into one folder that travels with the command (the device copies the working tree plus a few ignored
folders, 64 MiB in all, and reaches no package index):

- ``wheels/``: the wheels of :data:`WHEELS` — bitsandbytes (one ``py3-none-manylinux`` wheel that
  carries its CUDA 11.8-13.2 libraries, so any CPython >= 3.10 and any of those CUDA builds of torch),
  peft, xarray (pure Python), safetensors, tokenizers (``abi3``: any CPython >= 3.10), PyYAML (built
  per CPython version: fetched for each of ``--python``, default 3.11 and 3.12, as the device's python
  is not known here) and nvidia-ml-py (GPU utilisation). Versions are the ones this machine's environment tests with
  (``importlib.metadata``), so the device runs the code against what CI ran it against. The check
  installs from here only what does not import on the device (``gpu_check.install_carried``).
- ``runs/gpucheck/data/``: the prepared data of a tiny gas-detection run — :data:`GAS_RUN`'s SIMULATED
  spectra, made by the same call notebook 01 makes (``task.prepare_data``), because TauREx and its
  opacity tables are not on the device. A run's set links chunks of the shared spectra store on this
  machine, so it is exported self-contained (``gas_spectra.save``, the format ``gas_spectra.load``
  reads without the store); loading it needs numpy, pandas and pyarrow only.
- ``manifest.json``: what is here (files, sizes, sha256, versions), the commit and the date.

What is *assumed* on the device rather than carried (:data:`ASSUMED_ON_DEVICE`) is too large for the
budget (pandas and pyarrow are ~12 and ~40 MB per python version, transformers ~11 MB) and is in every
torch + PyG image we know of; the check names a missing one as the reason of the step it stops.

The folder must stay under :data:`CARRY_BUDGET_BYTES`; over it the script exits 3 naming the largest
files (without bitsandbytes the 8-bit rows and the QLoRA step are skipped on the device, with that
reason).

Usage: .venv/bin/python scripts/gpu_wheels.py [--dest .gpu_carry] [--python 3.11 3.12] [--data-only | --no-data]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent

# The device copies the working tree (~2 MB) and the carried folders, 64 MiB = 67.1 MB in all: 60 MB
# (decimal) for the carry leaves room for the tree to grow.
CARRY_BUDGET_BYTES = 60_000_000
PYTHON_VERSIONS = ("3.11", "3.12")
# manylinux tags pip must be told one by one (it matches glibc versions exactly); x86-64 only: the
# device's processor
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
RUN_NAME = "gpucheck"
SPECTRA_FOLDER = "gas_spectra"  # astrobio_lib.tasks.gas_detection.data.SPECTRA_DIR
# the tiny gas-detection run the device trains (throughput and preemption steps): 8 rocky planets x 4
# drawn atmospheres = 32 SIMULATED spectra, host stars split 5/1/2, ~25 s of TauREx on 2 cores
GAS_RUN = {"task": "gas_detection", "gas_planets": 8, "gas_atmospheres": 4, "seed": 0, "catalog_source": "snapshot"}


@dataclass(frozen=True)
class Wheel:
    dist: str  # the name on the package index
    module: str  # the name it imports as
    why: str  # which step needs it


WHEELS = (
    Wheel("bitsandbytes", "bitsandbytes", "8-bit AdamW rows (memory) and the 4-bit base (QLoRA)"),
    Wheel("peft", "peft", "the LoRA adapters of the QLoRA step"),
    Wheel("safetensors", "safetensors", "the tiny Llama checkpoint's weights (QLoRA)"),
    Wheel("tokenizers", "tokenizers", "the tiny Llama checkpoint's tokenizer (QLoRA)"),
    Wheel("PyYAML", "yaml", "the trainer's params files (astrobio_lib.config)"),
    Wheel("xarray", "xarray", "astrobio_lib.data.climate imports it at module level, and the gas dataset's "
                              "catalog features come through astrobio_lib.data.build"),
    Wheel("nvidia-ml-py", "pynvml", "GPU utilisation (torch.cuda.utilization)"),
    Wheel("zuko", "zuko", "the gas-detection model's posterior flow head (pure Python)"),
    Wheel("threadpoolctl", "threadpoolctl", "the gas-detection baselines' thread cap (pure Python)"),
)
# third-party modules the check's code paths import that are NOT carried: present in the torch + PyG
# images we target (the H200 machine's image lists every one), too large for the budget, or both
ASSUMED_ON_DEVICE = {
    # imported by the check's code paths (benchmarks/gpu_check.py records them; tests/test_gpu_check.py
    # checks that each is carried or listed here)
    "torch": "the device's CUDA build",
    "torch_geometric": "PyG, in the image",
    "numpy": "a dependency of PyG",
    "pandas": "the gas spectra's planet table (~12 MB per python version: not carried)",
    "pyarrow": "the gas spectra's planets.parquet (~40 MB: not carried)",
    "scipy": "the gas task's prior probit and ranks (in the H200 image; ~35 MB: not carried)",
    "transformers": "makes the tiny Llama checkpoint; peft imports it (~11 MB: not carried)",
    # needed by carried wheels when they import (peft, bitsandbytes), not by our code directly
    "accelerate": "peft", "huggingface_hub": "peft, transformers", "packaging": "peft, bitsandbytes",
    "psutil": "peft (and PyG)", "tqdm": "peft (and PyG)",
}


class CarryTooLarge(RuntimeError):
    """The carry folder exceeds :data:`CARRY_BUDGET_BYTES`."""


def wheel_name_parts(filename: str) -> tuple[str, str]:
    """Returns (normalised distribution name, version) of a wheel file name (PEP 427/503)."""
    dist, version = filename.split("-")[:2]
    return normalise(dist), version


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` -> ``pyyaml``, ``nvidia_ml_py`` -> ``nvidia-ml-py``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_version(dist: str) -> Optional[str]:
    """The version of ``dist`` this environment has installed (what the tests ran against), or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def download(wheel: Wheel, dest: Path, python_versions: tuple[str, ...]) -> list[str]:
    """Downloads ``wheel`` (no dependencies, binary only) for every python version; returns pip's
    complaints (empty when every version found a wheel; a universal wheel is fetched once).

    A failure is returned, not raised: the other wheels still come, and the check reports the step
    that needs the missing one as skipped with its reason."""
    version = pinned_version(wheel.dist)
    spec = f"{wheel.dist}=={version}" if version else wheel.dist
    problems = []
    for py in python_versions:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", py, *[a for p in PLATFORMS for a in ("--platform", p)],
               "-d", str(dest), spec]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
            problems.append(f"{spec} for CPython {py}: {lines[-1] if lines else f'pip exited {res.returncode}'}")
    return problems


def prune(wheels_dir: Path, wanted: dict[str, Optional[str]]) -> list[str]:
    """Removes wheels of other versions than ``wanted`` (normalised name -> version or None: any) and of
    distributions no longer listed — two versions of one package stop a whole ``pip install``.
    Returns the removed file names."""
    removed = []
    for f in sorted(wheels_dir.glob("*.whl")):
        dist, version = wheel_name_parts(f.name)
        if dist not in wanted or (wanted[dist] is not None and wanted[dist] != version):
            f.unlink()
            removed.append(f.name)
    return removed


def prepare_gas_run(dest: Path) -> dict:
    """Prepares the data of :data:`GAS_RUN` in ``dest/runs/gpucheck/data`` exactly as notebook 01 does
    (catalog snapshot, provenance, ``task.prepare_data``), then replaces the run's link into the spectra
    store by a self-contained export (``gas_spectra.save``: spectra.npz, planets.parquet, manifest with
    digests); returns its description for the manifest.

    Raises:
        RuntimeError: the data verdict is FAIL, or the export differs from the store's spectra.
    """
    import numpy as np

    from astrobio_lib import config, tasks
    from astrobio_lib.data import catalog as cat
    from astrobio_lib.data import gas_spectra as gs

    run_dir = dest / "runs" / RUN_NAME
    cfg = config.from_mapping({**GAS_RUN, "run_dir": str(run_dir)}, where="scripts/gpu_wheels.py GAS_RUN")
    data_dir = run_dir / "data"
    planets, provenance = cat.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path, cache_dir=data_dir)
    provenance.save(data_dir)
    report = tasks.of(cfg).prepare_data(cfg, planets, provenance, data_dir, None)
    if report.status == "FAIL":
        raise RuntimeError(f"the gas-detection data for the GPU check failed its verdict: {report.headline}")
    # A run's set is a link into the shared spectra store (absolute chunk paths on this machine): export it
    # as the self-contained format gas_spectra.load still reads (spectra.npz), which travels.
    spectra = data_dir / SPECTRA_FOLDER
    linked = gs.load(spectra)
    store = linked.manifest.get("store")
    gs.save(linked, spectra)
    exported = gs.load(spectra)
    if exported.depth.shape != linked.depth.shape or not np.array_equal(np.asarray(exported.depth),
                                                                         np.asarray(linked.depth)):
        raise RuntimeError(f"the exported gas-detection set in {spectra} differs from the store's")
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    return {**GAS_RUN, "run_dir": str(run_dir.relative_to(dest)), "verdict": report.status,
            "headline": report.headline, "exported_from_store": store, "format": exported.manifest.get("format"),
            "files": {str(p.relative_to(dest)): p.stat().st_size for p in files}}


def folder_bytes(folder: Path) -> int:
    """Total bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_budget(folder: Path, budget: int = CARRY_BUDGET_BYTES) -> int:
    """Returns the folder's size in bytes.

    Raises:
        CarryTooLarge: over ``budget``, naming the five largest files.
    """
    total = folder_bytes(folder)
    if total > budget:
        largest = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)[:5]
        raise CarryTooLarge(
            f"{folder} holds {total / 1e6:.1f} MB > the carry budget of {budget / 1e6:.0f} MB (the device copies the "
            f"working tree and carried folders, 64 MiB in all). Largest: "
            + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in largest)
            + ". Without bitsandbytes the check skips the 8-bit rows and the QLoRA step (say so in the table).")
    return total


def main(argv: Optional[list[str]] = None) -> int:
    from astrobio_lib.fsutil import sha256_file
    from astrobio_lib.results import commit

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=str(REPO / ".gpu_carry"), help="the carry folder (git-ignored)")
    parser.add_argument("--python", nargs="+", default=list(PYTHON_VERSIONS), metavar="X.Y",
                        help="CPython versions to fetch per-version wheels for (the device's is not known here)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--data-only", action="store_true", help="prepare the gas-detection run only (no downloads)")
    which.add_argument("--no-data", action="store_true", help="download the wheels only")
    args = parser.parse_args(argv)
    dest = Path(args.dest).resolve()
    wheels_dir = dest / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest_path = dest / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    problems: list[str] = []
    if not args.data_only:
        wheels_dir.mkdir(exist_ok=True)
        for w in WHEELS:
            print(f"== {w.dist} {pinned_version(w.dist) or '(latest)'}: {w.why}", flush=True)
            problems += download(w, wheels_dir, tuple(args.python))
        removed = prune(wheels_dir, {normalise(w.dist): pinned_version(w.dist) for w in WHEELS})
        if removed:
            print(f"removed wheels of other versions: {', '.join(removed)}")
        by_module = {normalise(w.dist): w.module for w in WHEELS}
        manifest["wheels"] = [{"file": f.name, "dist": wheel_name_parts(f.name)[0], "version": wheel_name_parts(f.name)[1],
                               "module": by_module.get(wheel_name_parts(f.name)[0]), "bytes": f.stat().st_size,
                               "sha256": sha256_file(f)} for f in sorted(wheels_dir.glob("*.whl"))]
        manifest["python_versions"], manifest["platforms"] = list(args.python), list(PLATFORMS)
        manifest["download_problems"] = problems
    if not args.no_data:
        print(f"== the gas-detection run's data ({GAS_RUN['gas_planets']} planets x {GAS_RUN['gas_atmospheres']} "
              f"atmospheres, TauREx on this machine)", flush=True)
        run_dir = dest / "runs" / RUN_NAME
        if run_dir.exists():
            shutil.rmtree(run_dir)
        manifest["gas_run"] = prepare_gas_run(dest)
        print(f"   {manifest['gas_run']['verdict']}: {manifest['gas_run']['headline']}")
    manifest.update({"what": "files benchmarks/gpu_check.py needs that a bare GPU machine lacks (scripts/gpu_wheels.py)",
                     "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "commit": commit(), "python_here": sys.version.split()[0],
                     "budget_bytes": CARRY_BUDGET_BYTES, "assumed_on_device": ASSUMED_ON_DEVICE})
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"\n{'MB':>7}  file")
    for f in sorted((p for p in dest.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size):
        print(f"{f.stat().st_size / 1e6:>7.2f}  {f.relative_to(dest)}")
    for p in problems:
        print(f"NOT DOWNLOADED: {p}", file=sys.stderr)
    try:
        total = check_budget(dest)
    except CarryTooLarge as exc:
        print(f"gpu_wheels: {exc}", file=sys.stderr)
        return 3
    print(f"\n{dest}: {total / 1e6:.1f} MB of the {CARRY_BUDGET_BYTES / 1e6:.0f} MB budget "
          f"({time.perf_counter() - t0:.0f} s); on the GPU machine: python3 benchmarks/gpu_check.py --carry "
          f"{os.path.relpath(dest, REPO) if dest.is_relative_to(REPO) else dest}")
    return 1 if problems else 0


if __name__ == "__main__":  # the guard matters: TauREx generation starts spawned worker processes
    sys.exit(main())
