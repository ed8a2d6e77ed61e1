"""The gas-detection task's evaluation (notebook 04, ``benchmarks/gas_detection.py``): the run's best
checkpoint on the test host stars of its SIMULATED spectra — detection against every baseline by a
paired test on the same noisy draws, the oracle's ceiling, and the calibration of the posterior."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from astrobio_lib.evaluate import load_model
from astrobio_lib.tasks.gas_detection import NAME, posterior
from astrobio_lib.tasks.gas_detection import baselines as bl
from astrobio_lib.tasks.gas_detection.data import _load, spectra_dir
from astrobio_lib.tasks.gas_detection.dataset import (
    RETRIEVAL_TARGETS,
    GasDetectionDataset,
    latent_truth,
    retrieval_truth,
    split,
)
from astrobio_lib.tasks.spec import Evaluation

NAMES = {"model": "trained model", "catalog": "catalog-only gradient boosting",
         "band_depths": "band-depth logistic regression", "spectrum_gbt": "full-spectrum gradient boosting",
         "oracle": "oracle (knows all but the gas)"}
COVERAGE_LIMIT = 0.05  # expected-coverage error a calibrated posterior stays within


def oracle_scorer(ds, rows: np.ndarray, floor: str, store=None, workers: int = -1, scheduler=None,
                  progress: Optional[Callable[[int, int], None]] = None):
    """The oracle's scorer for test spectra ``rows`` (their companion spectra computed or read from
    the store first)."""
    from astrobio_lib.data import companions
    from astrobio_lib.tasks.gas_detection import oracle

    unique = np.unique(rows)
    comp = companions.ensure(ds, unique, store=store, workers=workers, scheduler=scheduler, progress=progress)
    index = {int(r): k for k, r in enumerate(unique)}
    return oracle.scorer(ds, lambda r: comp[[index[int(v)] for v in r]], floor)


def evaluate_gas_run(run_dir: str | Path, draws: int = 4, bootstrap: int = 100, seed: Optional[int] = None,
                     floor: Optional[str] = None, with_oracle: bool = True, samples: int = 100, store=None,
                     workers: int = -1, scheduler=None,
                     progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Evaluates a run of the gas-detection task on the test host stars of its SIMULATED spectra
    (noise floor ``floor``, default the run's own; ``draws`` noise draws per spectrum and N, drawn from
    ``seed``, default the run's; the host split is always the run's own, so no training star is
    tested): detection curves of the model,
    the three baselines and (``with_oracle``) the oracle on the same noisy draws; the paired ΔAUROC
    against every baseline with its verdict; the fraction of the baseline-to-oracle gap the model
    closes; the posterior's expected coverage, retrieval accuracy and marginal calibration. Writes
    ``gas_detection_curves.csv``, ``gas_paired.csv``, ``gas_retrieval.csv``, ``gas_coverage.csv`` and
    ``gas_evaluation.json`` in the run folder; returns the frames and the predictions.

    Raises:
        DataNotBuilt: no spectra in the run folder.
        FileNotFoundError: no checkpoint.
        astrobio_lib.train.checkpoint.ConfigMismatch: the checkpoint was not trained on these spectra
            for this task.
    """
    from astrobio_lib.train import checkpoint as ckpt

    t0 = time.monotonic()
    run_dir = Path(run_dir)
    ds = _load(run_dir / "data")
    model, config_flat, path = load_model(run_dir)
    key = ds.manifest.get("cache_key")
    if config_flat.get("task") != NAME or config_flat.get("dataset_build_sha256") != key:
        raise ckpt.ConfigMismatch(f"{path} was trained with task: {config_flat.get('task')} on data "
                                  f"{str(config_flat.get('dataset_build_sha256'))[:12]}…, not on the gas-detection "
                                  f"spectra in {spectra_dir(run_dir / 'data')} ({str(key)[:12]}…): train this run "
                                  f"with task: {NAME}")
    run_seed = int(config_flat.get("seed", 0))
    seed = run_seed if seed is None else seed
    floor = floor or config_flat.get("noise_floor", "white")  # runs from before the floor option had only white
    which = split(ds, run_seed)
    test = GasDetectionDataset(ds, which, "test", draws, seed, floor=floor)
    n_steps = 2 + len(test.transits) * (len(bl.BASELINES) + 1 + int(with_oracle))
    step = {"done": 0}

    def advance(k: int = 1) -> None:
        step["done"] += k
        if progress:
            progress(min(step["done"], n_steps), n_steps)

    pred = posterior.predict(model, test, samples=samples, seed=seed)
    advance()
    scorers = {"model": posterior.scorer(pred)}
    if with_oracle:
        scorers["oracle"] = oracle_scorer(ds, np.flatnonzero(which == "test"), floor, store, workers, scheduler)
    advance()
    cells = bl.score_cells(ds, which, draws=draws, seed=seed, floor=floor, scorers=scorers,
                           progress=(lambda d, t: progress(2 + d, n_steps)) if progress else None)
    curves = bl.curves_of(ds, cells, bootstrap, seed)
    paired = bl.paired_verdicts(ds, cells, "model", bl.BASELINES, bootstrap, seed)
    gap = bl.gap_closed(curves) if with_oracle else pd.DataFrame()
    truth, latent = retrieval_truth(ds), latent_truth(ds)
    coverage = posterior.coverage_by_n(pred)
    retrieval = posterior.retrieval_table(pred, truth, RETRIEVAL_TARGETS)
    calibration = posterior.marginal_calibration(pred, latent, RETRIEVAL_TARGETS)
    cov_error = posterior.coverage_error(coverage[coverage["n_transits"] == 0])
    strongest = bl.strongest_baseline(curves)
    curves.to_csv(run_dir / "gas_detection_curves.csv", index=False)
    paired.to_csv(run_dir / "gas_paired.csv", index=False)
    retrieval.to_csv(run_dir / "gas_retrieval.csv", index=False)
    coverage.to_csv(run_dir / "gas_coverage.csv", index=False)
    out = {"checkpoint": str(path), "simulated": True, "n_test_spectra": int((which == "test").sum()),
           "n_test_hosts": int(len(np.unique(ds.hostname[which == "test"]))), "noise_draws": draws,
           "noise_floor": floor, "bootstrap": bootstrap, "posterior_samples": samples,
           "strongest_baseline": strongest, "coverage_error": cov_error,
           "paired": paired.to_dict("records"), "gap_closed": gap.to_dict("records"),
           "retrieval": retrieval.to_dict("records"), "seconds": round(time.monotonic() - t0, 1),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run_dir / "gas_evaluation.json").write_text(json.dumps(out, indent=1, default=float))
    return {**out, "curves": curves, "paired_table": paired, "gap_table": gap, "retrieval_table": retrieval,
            "coverage": coverage, "calibration": calibration, "pred": pred, "truth": truth, "latent": latent,
            "examples": posterior.examples(pred, latent, seed=seed)}


def headline(result: dict[str, Any]) -> tuple[str, str, str]:
    """(status, the verdict in plain words — against the strongest spectral baseline, by the paired
    test —, the next action when not PASS)."""
    paired, strongest = result["paired_table"], result["strongest_baseline"]
    vs = paired[paired["against"] == strongest]["verdict"].value_counts().to_dict()
    beats, worse, same = vs.get("beats", 0), vs.get("worse", 0), vs.get("not distinguishable", 0)
    total = beats + worse + same
    spectral = paired[paired["against"].isin(("band_depths", "spectrum_gbt"))]
    worse_any = int((spectral["verdict"] == "worse").sum())
    if beats and not worse:
        words = f"the model beats the strongest baseline, {NAMES[strongest]}, in {beats} of {total} gas x N cells"
    elif worse:
        words = f"the model is worse than the strongest baseline, {NAMES[strongest]}, in {worse} of {total} gas x N cells"
    else:
        words = f"the model does not beat the strongest baseline, {NAMES[strongest]}, in any gas x N cell"
    words += (f" (paired ΔAUROC 95% intervals: above zero in {beats}, below in {worse}, across zero in {same} of "
              f"{total} cells)")
    gap = result["gap_table"]
    if len(gap) and gap["gap_closed"].notna().any():
        words += f"; it closes a median {100 * gap['gap_closed'].median():.0f}% of the gap to the oracle ceiling"
    words += (f"; posterior coverage error {result['coverage_error']:.3f}"
              + (" (calibrated)" if result["coverage_error"] <= COVERAGE_LIMIT else f" (above {COVERAGE_LIMIT})"))
    status = "PASS" if beats and not worse_any and result["coverage_error"] <= COVERAGE_LIMIT else "WARN"
    action = ""
    if status != "PASS":
        if not beats or worse_any:
            action = ("train on more atmospheres and for longer: gas_atmospheres: 75 (3,000 spectra, ~3.5 min of TauREx "
                      "on 2 cores) with max_steps: 6000 and micro_batch_size: 256, or measure the same on your own set "
                      "with benchmarks/gas_detection.py; if the oracle ceiling sits close to the baselines, the noise, "
                      "not the model, limits detection (more transits or brighter hosts)")
        else:
            action = ("the posterior is mis-calibrated: train longer (max_steps) or on more atmospheres "
                      "(gas_atmospheres) so the flow sees more of the prior; check the coverage curve per N below")
    return status, words, action


def evaluate(cfg, progress: Optional[Callable[[int, int], None]] = None) -> Evaluation:
    """Notebook 04's evaluation of the run of ``cfg`` and its verdict."""
    from astrobio_lib.data.spectra_store import scheduler_address

    result = evaluate_gas_run(cfg.run.run_dir, draws=cfg.eval.gas_noise_draws, bootstrap=cfg.eval.bootstrap_samples,
                              seed=cfg.run.seed, floor=cfg.data.noise_floor, store=cfg.data.spectra_store,
                              workers=cfg.data.simulation_workers, scheduler=scheduler_address(cfg.data.dask_scheduler),
                              progress=progress)
    status, words, action = headline(result)
    return Evaluation(status, words, result, next_action=action)


def results(run_dir: Path) -> dict[str, Any]:
    """The run's headline numbers (index.html, README) from ``gas_evaluation.json`` and the curves CSV."""
    run_dir = Path(run_dir)
    path = run_dir / "gas_evaluation.json"
    if not path.is_file():
        return {}
    ev = json.loads(path.read_text())
    paired = pd.DataFrame(ev["paired"])
    strongest = ev["strongest_baseline"]
    curves_path = run_dir / "gas_detection_curves.csv"
    ceiling = {}
    if curves_path.is_file():
        c = pd.read_csv(curves_path)
        ceiling = {(r.gas, int(r.n_transits)): r.auroc for r in c[c["baseline"] == "oracle"].itertuples()}
    rows = []
    for r in paired[(paired["against"] == strongest) & paired["n_transits"].isin((10, 30))].sort_values(
            ["n_transits", "gas"]).itertuples():
        row = {"gas": r.gas, "transits": int(r.n_transits), "model AUROC": round(r.model_auroc, 3),
               f"{NAMES[strongest]} AUROC": round(r.baseline_auroc, 3),
               "ΔAUROC [95%]": f"{r.delta_auroc:+.3f} [{r.delta_lo:+.3f}, {r.delta_hi:+.3f}]", "verdict": r.verdict}
        if ceiling:
            row["oracle AUROC"] = round(float(ceiling.get((r.gas, int(r.n_transits)), float("nan"))), 3)
        rows.append(row)
    gap = pd.DataFrame(ev.get("gap_closed") or [])
    numbers = {"strongest baseline": NAMES[strongest], "posterior coverage error": round(ev["coverage_error"], 3),
               "noise floor": ev.get("noise_floor"), "test host stars": ev["n_test_hosts"],
               "test spectra": ev["n_test_spectra"]}
    if len(gap) and gap["gap_closed"].notna().any():
        numbers["median share of the gap to the oracle closed"] = round(float(gap["gap_closed"].median()), 2)
    return {"finding": None, "tables": {"Detection at 10 and 30 transits against the strongest baseline "
                                        "(SIMULATED spectra, unseen host stars)": rows}, "numbers": numbers}


def benchmark_markdown(csv_path: str | Path) -> str:
    """A ``benchmarks/gas_detection.py`` result (its CSV and the JSON beside it) as a README table:
    per gas and N, the model's AUROC, ΔAUROC against each spectral baseline with its paired 95%
    interval and verdict, the oracle ceiling and the share of the gap to it the model closes."""
    import pandas as pd

    csv_path = Path(csv_path)
    frame = pd.read_csv(csv_path)
    meta = json.loads(csv_path.with_suffix(".json").read_text())
    names = {"band_depths": "band depths + LR", "spectrum_gbt": "full-spectrum GBT"}
    lines = [f"*`{meta['command']}` — {meta['spectra']} SIMULATED spectra ({meta['planets']} planets x "
             f"{meta['atmospheres_per_planet']} atmospheres, set seed {meta['set_seed']}, saturation: {meta['saturation']}), "
             f"noise floor {meta['noise_floor']}; test: {meta['test_hosts']} host stars, {meta['test_spectra']} spectra x "
             f"{meta['draws']} draws; {meta['steps']} steps (best validation at step {meta['best_step']}); wall time "
             f"{meta['wall_s']:.0f} s (training {meta['train_s']:.0f} s, evaluation {meta['evaluate_s']:.0f} s) on "
             f"{meta['machine']}, load average before {meta['load_average_before']}; {meta['created']}"
             f"{', commit ' + meta['commit'] if meta.get('commit') else ''}.*", "",
             "| gas | N | model AUROC | Δ vs band depths + LR [95%] | Δ vs full-spectrum GBT [95%] | oracle | gap closed |",
             "|---|---|---|---|---|---|---|"]
    for (gas, n), g in frame[frame["against"].isin(names)].groupby(["gas", "n_transits"], sort=False):
        by = g.set_index("against")
        cells = []
        for base in names:
            r = by.loc[base]
            mark = {"beats": " **beats**", "worse": " *worse*"}.get(r["verdict"], "")
            cells.append(f"{r['delta_auroc']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]{mark}")
        best = max(by.loc[b, "baseline_auroc"] for b in names)
        oracle = by["oracle_auroc"].iloc[0]
        model = by["model_auroc"].iloc[0]
        gap = float(bl.share_of_gap(model, best, oracle))
        lines.append(f"| {gas} | {n} | {model:.3f} | {cells[0]} | {cells[1]} | "
                     f"{'' if pd.isna(oracle) else f'{oracle:.3f}'} | {'' if pd.isna(gap) else f'{gap:.2f}'} |")
    lines += ["", f"Strongest baseline: {names.get(meta['strongest_baseline'], meta['strongest_baseline'])}; posterior "
                  f"expected-coverage error {meta['coverage_error']:.3f}."]
    return "\n".join(lines) + "\n"
