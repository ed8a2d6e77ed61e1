"""Build a run's dataset into ``outputs/<run>/data`` (labels now; shards and manifest to come)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from astrobio_lib.config import DataConfig
from astrobio_lib.data.catalog import Provenance
from astrobio_lib.data.habitability import label_table
from astrobio_lib.data.loader import split_by_host

LABEL_COLUMNS = ["pl_name", "hostname", "hz_conservative", "hz_optimistic", "rocky",
                 "habitable_phl", "habitable", "esi", "p_habitable", "split"]


def write_labels(catalog: pd.DataFrame, provenance: Provenance, data_cfg: DataConfig, seed: int,
                 out_dir: str | Path) -> pd.DataFrame:
    """Computes labels and host-grouped splits for every catalog planet, writes
    ``labels.csv`` (booleans; empty where undetermined) and ``catalog_provenance.json`` into
    ``out_dir``, and returns the label table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = label_table(catalog, n_samples=data_cfg.label_mc_samples, seed=seed)
    train = 1.0 - data_cfg.val_fraction - data_cfg.test_fraction
    labels["split"] = split_by_host(labels["hostname"], (train, data_cfg.val_fraction,
                                                         data_cfg.test_fraction),
                                    seed=seed, positive=labels["p_habitable"])
    labels = labels[LABEL_COLUMNS]
    tmp = out_dir / "labels.csv.tmp"
    labels.to_csv(tmp, index=False)
    tmp.replace(out_dir / "labels.csv")
    (out_dir / "catalog_provenance.json").write_text(json.dumps(provenance.to_dict(), indent=2))
    return labels
