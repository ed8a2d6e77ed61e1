"""Task ``gas_detection`` (the product's question): which gases are in a rocky planet's atmosphere,
how much, and how sure are we — from a noisy SIMULATED JWST NIRSpec PRISM transmission spectrum of N
transits of a real planet.

- data (notebook 01, :mod:`.data`): the rocky planets JWST could best characterise (one per host
  star), atmospheres drawn from stated priors, TauREx 3 spectra, split by host star;
- model (:mod:`.model`): catalog + spectrum encoders, fusion, presence and retrieval heads — no LLM;
- training items (:mod:`.dataset`): noisy draws at 1-100 transits;
- evaluation (notebook 04, :mod:`.evaluation`, :mod:`.baselines`): detection curves against three
  baselines on the same test draws, a verdict per gas and N, retrieval coverage and calibration.

This module is imported to validate a configuration: it stays light (the parts import their heavy
dependencies when called).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astrobio_lib.tasks.spec import DataInfo, DataReport, Evaluation, TaskData, TaskSpec

NAME = "gas_detection"


def _model(base):
    from astrobio_lib.tasks.gas_detection.model import model_config

    return model_config(base)


MIN_PLANETS = 5  # one host star each: a non-empty 60/20/20 split and the 5-fold circularity check


def _rules(cfg) -> list[str]:
    problems = []
    n = cfg.data.gas_planets
    if n == 0:
        problems.append("task: gas_detection trains on the gas-detection spectra but gas_planets: 0 generates none: "
                        "set gas_planets (e.g. 40) or choose another task")
    elif n < MIN_PLANETS:
        problems.append(f"gas_planets: {n}: the host-star split (60/20/20) and the 5-fold circularity check need at "
                        f"least {MIN_PLANETS} planets (one per host star)")
    elif cfg.data.catalog_source == "snapshot":  # cheap to count on the shipped catalog, before anything runs
        from astrobio_lib.tasks.gas_detection.data import hosts_in_snapshot

        available = hosts_in_snapshot(cfg.data.saturation)
        if n > available:
            problems.append(f"gas_planets: {n} > the {available} host stars of the shipped catalog with a rocky planet "
                            f"the simulation can use (radius, period, stellar temperature, radius and distance"
                            f"{'; fainter than J = 10.5, saturation: exclude' if cfg.data.saturation == 'exclude' else ''})"
                            f": lower gas_planets to at most {available}")
    return problems


def _prepare(cfg, planets, provenance, data_dir: Path, progress=None) -> DataReport:
    from astrobio_lib.tasks.gas_detection.data import prepare

    return prepare(cfg, planets, provenance, data_dir, progress)


def _show_data(report: DataReport) -> None:
    from astrobio_lib.tasks.gas_detection.report import show_data

    show_data(report)


def _info(cfg, data_dir: Path) -> DataInfo:
    from astrobio_lib.tasks.gas_detection.data import info

    return info(cfg, data_dir)


def _open(cfg, data_dir: Path) -> TaskData:
    from astrobio_lib.tasks.gas_detection.data import open_train_val

    return open_train_val(cfg, data_dir)


def _planned_key(cfg, planets, provenance) -> str:
    from astrobio_lib.tasks.gas_detection.data import planned_key

    return planned_key(cfg, planets, provenance)


def _check(cfg, data_dir: Path):
    from astrobio_lib.tasks.gas_detection.data import check

    return check(cfg, data_dir)


def _evaluate(cfg, progress=None) -> Evaluation:
    from astrobio_lib.tasks.gas_detection.evaluation import evaluate

    return evaluate(cfg, progress)


def _results(run_dir: Path) -> dict[str, Any]:
    from astrobio_lib.tasks.gas_detection.evaluation import results

    return results(run_dir)


def _show_evaluation(evaluation: Evaluation) -> Any:
    from astrobio_lib.tasks.gas_detection.report import show_evaluation

    return show_evaluation(evaluation)


SPEC = TaskSpec(
    name=NAME,
    title="gas detection and retrieval from SIMULATED JWST spectra",
    modalities=("catalog", "spectrum"),
    model=_model,
    loss_keys=("loss_gas_detection", "loss_retrieval"),
    headline_keys=("loss_gas_detection",),  # the best checkpoint: the flow is checked by its coverage in 04
    headline_label="gas detection BCE",
    data_keys=("gas_planets", "gas_atmospheres", "saturation", "noise_floor", "gas_train_draws"),
    prepare_data=_prepare,
    show_data=_show_data,
    data_info=_info,
    open_data=_open,
    evaluate=_evaluate,
    show_evaluation=_show_evaluation,
    rules=_rules,
    planned_key=_planned_key,
    check_data=_check,
    results=_results,
    description=__doc__.split("\n\n")[0],
)
