"""Task ``habitability`` (catalog context): P(habitable) of a planet — the Kopparapu et al. 2014
habitable zone and rocky size on the catalog, with Monte-Carlo soft labels over the error bars —
learned by the seeds' multimodal model (catalog, climate datacube, metabolic graph, spectrum, text
through an LLM) with its multi-task heads.

The hard label is a formula of catalog columns, so this task relearns a formula (gradient boosting on
the catalog scores it perfectly); it is kept as the context of the LLM plans (LoRA / QLoRA on a
pretrained Llama) and of the memory budget of the seeds' 17B plan.

- data (notebook 01, :mod:`.data`): labels for every catalog planet, the multimodal dataset;
- model (:mod:`.model`): every encoder, the seeds' heads and loss;
- evaluation (notebook 04, :mod:`.evaluation`): AUPRC and Brier with host-bootstrap intervals against
  four baselines, calibration, ablations.

This module is imported to validate a configuration: it stays light.
"""

from __future__ import annotations

from pathlib import Path

from astrobio_lib.tasks.spec import DataInfo, DataReport, Evaluation, TaskData, TaskSpec

NAME = "habitability"
DATA_KEYS = ("label_mc_samples", "val_fraction", "test_fraction", "n_planets", "climate_domain", "metabolic_model",
             "text_max_len", "shard_size")


def _model(base):
    from astrobio_lib.tasks.habitability.model import model_config

    return model_config(base)


def _prepare(cfg, planets, provenance, data_dir: Path, progress=None) -> DataReport:
    from astrobio_lib.tasks.habitability.data import prepare

    return prepare(cfg, planets, provenance, data_dir, progress)


def _show_data(report: DataReport) -> None:
    from astrobio_lib.tasks.habitability.report import show_data

    show_data(report)


def _info(cfg, data_dir: Path) -> DataInfo:
    from astrobio_lib.tasks.habitability.data import info

    return info(cfg, data_dir)


def _open(cfg, data_dir: Path) -> TaskData:
    from astrobio_lib.tasks.habitability.data import open_train_val

    return open_train_val(cfg, data_dir)


def _planned_key(cfg, planets, provenance) -> str:
    from astrobio_lib.data import text
    from astrobio_lib.data.build import build_sha256

    return build_sha256(cfg.data, cfg.run.seed, provenance, text.tokenizer_for(cfg.model.llm_checkpoint))


def _check(cfg, data_dir: Path):
    from astrobio_lib.tasks.habitability.data import check

    return check(cfg, data_dir)


def _evaluate(cfg, progress=None) -> Evaluation:
    from astrobio_lib.tasks.habitability.evaluation import evaluate

    return evaluate(cfg, progress)


def _show_evaluation(evaluation: Evaluation) -> None:
    from astrobio_lib.tasks.habitability.report import show_evaluation

    show_evaluation(evaluation)


SPEC = TaskSpec(
    name=NAME,
    title="P(habitable) from the catalog and the modelled modalities",
    modalities=("catalog", "climate", "graph", "spectrum", "text"),
    model=_model,
    loss_keys=("loss_habitability", "loss_climate_state", "loss_biosignature", "loss_reconstruction",
               "loss_physics", "loss_consistency", "loss_language"),
    headline_keys=("loss_habitability",),
    headline_label="habitability BCE",
    data_keys=DATA_KEYS,
    prepare_data=_prepare,
    show_data=_show_data,
    data_info=_info,
    open_data=_open,
    evaluate=_evaluate,
    show_evaluation=_show_evaluation,
    planned_key=_planned_key,
    check_data=_check,
    description=__doc__.split("\n\n")[0],
)
