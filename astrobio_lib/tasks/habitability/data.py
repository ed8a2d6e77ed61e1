"""The habitability task's data: the multimodal dataset notebook 01 builds (labels for every catalog
planet, then shards of the sampled planets with every modality; :mod:`astrobio_lib.data.build`) and
what the trainer opens (:class:`~astrobio_lib.data.loader.PlanetDataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from astrobio_lib.tasks.habitability import DATA_KEYS
from astrobio_lib.tasks.spec import DataInfo, DataNotBuilt, DataReport, TaskData


def prepare(cfg, planets: pd.DataFrame, provenance, data_dir: Path,
            progress: Optional[Callable[[int, int], None]] = None) -> DataReport:
    """Builds (or reuses) the dataset of ``cfg`` in ``data_dir`` from the loaded catalog and validates
    it; returns the data verdict and what 01 shows."""
    from astrobio_lib.data import text
    from astrobio_lib.data.build import build_dataset
    from astrobio_lib.data.loader import PlanetDataset
    from astrobio_lib.data.validate import validate_dataset

    tokenizer = text.tokenizer_for(cfg.model.llm_checkpoint)  # bytes, or the pretrained LLM's own tokenizer
    manifest = build_dataset(planets, provenance, cfg.data, cfg.run.seed, data_dir, tokenizer=tokenizer)
    labels = pd.read_csv(Path(data_dir) / "labels.csv")
    report = validate_dataset(data_dir)
    dataset = PlanetDataset(data_dir, validate=False)
    leaked = int(labels.groupby("hostname")["split"].nunique().gt(1).sum())
    habitable = int((labels["habitable"] == True).sum())  # noqa: E712
    failed = len(labels) != len(planets) or leaked or report.fatal
    headline = (f"{provenance.source} catalog{' (SYNTHETIC: not real planets)' if provenance.synthetic else ''}, "
                f"{len(dataset)} planets built with every modality ({manifest['coverage']['climate']} climate cubes, "
                f"{manifest['coverage']['spectrum']} spectra), {habitable} habitable in the catalog, "
                f"{len(report.fatal)} fatal findings" + (f": {report.fatal[0].message}" if report.fatal else ""))
    status = "FAIL" if failed else "WARN" if provenance.synthetic else "PASS"
    action = ("" if status == "PASS" else
              "the catalog is SYNTHETIC: set catalog_source: snapshot (the shipped real catalog) or auto"
              if not failed else
              f"fix the finding named above ({report.fatal[0].message})" if report.fatal else
              "a host star sits in two splits or a planet was lost: rebuild with python -m astrobio_lib.pipeline "
              "PARAMS --only 01 --force and report the bug")
    return DataReport(status, headline, next_action=action,
                      details={"manifest": manifest, "labels": labels, "report": report, "dataset": dataset,
                               "planets": planets, "tokenizer": tokenizer, "leaked_hosts": leaked})


def _manifest(data_dir: Path) -> dict[str, Any]:
    from astrobio_lib.data.build import load_manifest

    manifest = load_manifest(data_dir)
    if manifest is None:
        raise DataNotBuilt(f"no built dataset in {data_dir}: run notebook 01_data_validation for this run first "
                           f"(python -m astrobio_lib.pipeline PARAMS --only 01), or build_for_config(cfg)")
    return manifest


def built_with(manifest: dict[str, Any]) -> dict[str, Any]:
    """The configuration values the dataset was built with (its manifest), the catalog's real source
    included: recorded in checkpoints and train_params.yaml instead of a notebook's defaults."""
    out = {k: manifest["config"][k] for k in DATA_KEYS if k in manifest["config"]}
    if manifest.get("catalog", {}).get("source"):
        out["catalog_source"] = manifest["catalog"]["source"]
    return out


def check(cfg, data_dir: Path) -> Optional[str]:
    """Why the built dataset does not verify (no manifest, a shard or the graphs missing or not matching
    their sha256, no labels), or None."""
    from astrobio_lib.data.build import load_manifest, verify_files

    manifest = load_manifest(data_dir)
    if manifest is None:
        return f"no built dataset in {data_dir}"
    bad = verify_files(Path(data_dir), manifest)
    if bad or not (Path(data_dir) / "labels.csv").is_file():
        return f"dataset in {data_dir}: {', '.join(bad) or 'labels.csv'} missing or not matching its sha256"
    return None


def info(cfg, data_dir: Path) -> DataInfo:
    """The build's identity, text length and provenance from its manifest (no shard loaded).

    Raises:
        DataNotBuilt: no complete build in ``data_dir``.
    """
    manifest = _manifest(data_dir)
    return DataInfo(key=manifest["build_sha256"], text_len=int(manifest["config"]["text_max_len"]),
                    built_with=built_with(manifest),
                    description=f"{manifest['coverage']['planets']} planets, build {manifest['build_sha256'][:12]} "
                                f"({manifest['config']['text_max_len']} tokens per text)")


def open_train_val(cfg, data_dir: Path) -> TaskData:
    """The training and validation splits of the built dataset (validated on opening).

    Raises:
        DataNotBuilt: no complete build in ``data_dir``.
        astrobio_lib.data.validate.DataValidationError: the build has fatal findings.
    """
    from astrobio_lib.data.loader import Collate, PlanetDataset
    from astrobio_lib.models import adapters

    manifest = _manifest(data_dir)
    model_cfg = adapters.model_config(cfg.flat())  # the LLM the texts must fit (preset or checkpoint)
    source = (f"the LLM checkpoint {cfg.model.llm_checkpoint}" if cfg.model.llm_checkpoint
              else f"model_preset {cfg.model.model_preset}")
    tokenizer = manifest.get("modalities", {}).get("text", {})
    if int(tokenizer.get("vocab_size", 0)) > model_cfg.llm.vocab_size or (
            cfg.model.llm_checkpoint and not tokenizer.get("sha256")):
        raise DataNotBuilt(f"the dataset in {data_dir} was tokenized with {tokenizer.get('tokenizer')} (vocabulary "
                           f"{tokenizer.get('vocab_size')}), which does not fit {source} (vocabulary "
                           f"{model_cfg.llm.vocab_size}): run 01_data_validation with the same llm_checkpoint")
    train, val = PlanetDataset(data_dir, "train"), PlanetDataset(data_dir, "val", validate=False)
    return TaskData(train, val, Collate(train.graphs), key=manifest["build_sha256"],
                    text_len=int(manifest["config"]["text_max_len"]), synthetic=train.synthetic,
                    built_with=built_with(manifest),
                    description=f"{len(train)} training planets, {len(val)} validation planets")
