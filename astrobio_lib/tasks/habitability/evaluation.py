"""The habitability task's evaluation on the test split (host systems the model never saw).

Targets, grouped by host system:
- hard label ``habitable`` (rocky and in the optimistic HZ on the catalog point estimates; planets
  whose label is undetermined are left out), for AUPRC, AUROC, balanced accuracy, MCC, F1, plain
  accuracy (shown only beside the majority-class accuracy);
- soft label ``p_habitable`` (Monte-Carlo over the error bars), for the Brier score.

Baselines on the same split: majority class (train prevalence), the HZ + rocky rule on the
catalog point estimates (the hard label's own definition: perfect on it by construction, so it
says what physics alone gives), logistic regression on (log insolation, T_eff, log radius), and
scikit-learn's HistGradientBoosting on the catalog features. Verdict per baseline: "BEATS it" only
when the intervals do not overlap.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from astrobio_lib.data.loader import Collate, PlanetDataset
from astrobio_lib.evaluate import (
    auroc,
    bootstrap_by_host,
    classification_metrics,
    load_model,
    one_thread,
    reliability,
)
from astrobio_lib.inference import run_batches
from astrobio_lib.tasks.spec import Evaluation

MODALITIES = ("catalog", "climate", "graph", "spectrum", "text")


def _known(modalities: Sequence[str]) -> None:
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)}: one of {MODALITIES}")


def hide(batch: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """The batch with ``modalities`` hidden from the model (an ablation).

    Raises:
        ValueError: an unknown modality.
    """
    _known(modalities)
    batch = dict(batch)
    for m in modalities:
        if m == "catalog":
            batch["catalog_mask"] = torch.zeros_like(batch["catalog_mask"])
        elif m == "graph":
            batch["has_graph"] = torch.zeros_like(batch["has_graph"])
            batch["graph"] = None
        else:
            batch[f"has_{m}"] = torch.zeros_like(batch[f"has_{m}"])
    return batch


def predict(model, dataset: PlanetDataset, batch_size: int = 16, mask: Sequence[str] = ()) -> pd.DataFrame:
    """Returns one row per planet of ``dataset``: predicted P(habitable), climate state and
    biosignature probability and the targets; modalities in ``mask`` are hidden from the model
    (ablation).

    Raises:
        ValueError: an unknown modality in ``mask``.
    """
    _known(mask)  # names an unknown modality before any batch runs
    outs, _ = run_batches(model, dataset, Collate(dataset.graphs), batch_size,
                          keys=("habitability_logit", "biosignature_logit", "climate_logits"),
                          edit=(lambda b: hide(b, mask)) if mask else None)
    prob, bio = expit(outs["habitability_logit"]), expit(outs["biosignature_logit"])
    state = outs["climate_logits"].argmax(-1)
    rows = []
    for j in range(len(dataset)):
        it = dataset[j]
        rec = dataset.manifest["records"][int(it["record"])]
        rows.append({"pl_name": rec["pl_name"], "hostname": rec["hostname"], "prob": float(prob[j]),
                     "p_habitable": float(it["p_habitable"]), "climate_state_true": int(it["climate_state"]),
                     "climate_state_pred": int(state[j]), "biosignature_true": float(it["biosignature"]),
                     "biosignature_prob": float(bio[j])})
    return pd.DataFrame(rows)


@torch.no_grad()
def text_perplexity(model, dataset: PlanetDataset) -> float:
    """exp(mean next-token cross-entropy) over the dataset's descriptions."""
    from astrobio_lib.models.llm import lm_loss

    total, count = 0.0, 0
    for i in range(len(dataset)):
        it = dataset[i]
        ids, mask = it["text_ids"][None], it["text_mask"][None]
        logits, _ = model.text_encoder(ids)
        n = int(mask[:, 1:].sum())
        total += float(lm_loss(logits, ids, mask)) * n
        count += n
    return float(np.exp(total / max(count, 1)))


@torch.no_grad()
def graph_reconstruction_auc(model, dataset: PlanetDataset, seed: int = 0) -> float:
    """ROC AUC of the graph VAE reconstructing each metabolic-graph variant's edges."""
    torch.manual_seed(seed)
    return float(np.mean([model.graph_encoder.edge_auc(x, ei) for x, ei in dataset.graphs]))


# --------------------------------------------------------------------------- baselines


def baseline_predictions(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Returns P(habitable) on ``test`` for each baseline, fitted on ``train`` (frames from
    :func:`catalog_frame`; hard labels in ``y``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    prevalence = float(train["y"].mean())
    out = {"majority class": np.full(len(test), prevalence),
           "HZ + rocky rule": test["rule"].to_numpy(float)}
    cols = ["log10_insolation", "teff_over_sun", "log10_radius"]
    med = train[cols].median()
    if train["y"].nunique() == 2:
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced"))
        lr.fit(train[cols].fillna(med), train["y"])
        out["logistic (log S, Teff, log R)"] = lr.predict_proba(test[cols].fillna(med))[:, 1]
        feats = [c for c in train.columns if c.startswith(("log10_", "teff", "eccentricity", "star_", "esi",
                                                            "radius_relative", "planets_in"))]
        feats = [c for c in feats if train[c].notna().any()]  # all-NaN columns break sklearn's binning
        hgb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
        with one_thread():
            hgb.fit(train[feats], train["y"])
        out["gradient boosting (catalog)"] = hgb.predict_proba(test[feats])[:, 1]
    return out


def catalog_frame(dataset: PlanetDataset, labels: pd.DataFrame) -> pd.DataFrame:
    """Returns the raw catalog features (un-standardised, NaN where missing), the hard label ``y``,
    the soft label and the rule's verdict for the planets of ``dataset``."""
    norm = dataset.manifest["normalisation"]
    mean, std = np.array(norm["catalog_mean"]), np.array(norm["catalog_std"])
    idx = dataset.indices
    x = dataset.tensors["catalog"][idx].numpy() * std + mean
    x = np.where(dataset.tensors["catalog_mask"][idx].numpy(), x, np.nan)
    names = [dataset.manifest["records"][int(r)]["pl_name"] for r in dataset.tensors["record"][idx]]
    frame = pd.DataFrame(x, columns=dataset.manifest["catalog_features"])
    frame["pl_name"] = names
    frame = frame.merge(labels[["pl_name", "hostname", "habitable", "p_habitable"]], on="pl_name", how="left")
    frame["rule"] = frame["habitable"].map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0})
    frame["y"] = frame["rule"]
    return frame


def verdicts(results: dict[str, dict[str, tuple[float, float, float]]], model_name: str = "model") -> list[str]:
    """One sentence per baseline: does the model beat it on Brier and AUPRC with
    non-overlapping intervals?"""
    m = results[model_name]
    lines = []
    for name, r in results.items():
        if name == model_name:
            continue
        parts = []
        for metric, better in (("brier_soft", "lower"), ("auprc", "higher")):
            (mp, ml, mh), (bp, bl, bh) = m[metric], r[metric]
            if any(np.isnan(v) for v in (mp, bp, ml, mh, bl, bh)):
                parts.append(f"{metric}: undefined on this split")
            elif (better == "lower" and mh < bl) or (better == "higher" and ml > bh):
                parts.append(f"{metric}: BEATS it ({mp:.3f} [{ml:.3f}, {mh:.3f}] vs {bp:.3f} [{bl:.3f}, {bh:.3f}])")
            else:
                parts.append(f"{metric}: does NOT beat it ({mp:.3f} [{ml:.3f}, {mh:.3f}] vs {bp:.3f} [{bl:.3f}, {bh:.3f}])")
        lines.append(f"vs {name}: " + "; ".join(parts))
    return lines


def evaluate_run(run_dir: str | Path, bootstrap: int = 200, seed: int = 0,
                 progress: bool = False) -> dict[str, Any]:
    """Runs the whole evaluation of a run on its test split and writes ``evaluation.json``;
    ``progress`` prints text progress bars for the bootstrap (the slow part).

    Raises:
        DataNotBuilt: no dataset in the run folder.
        FileNotFoundError: no checkpoint.
        astrobio_lib.train.checkpoint.ConfigMismatch: the checkpoint was trained for another task or on
            another build.
    """
    from astrobio_lib.tasks.habitability import NAME
    from astrobio_lib.tasks.habitability.data import _manifest
    from astrobio_lib.train.checkpoint import ConfigMismatch

    run_dir = Path(run_dir)
    key = _manifest(run_dir / "data")["build_sha256"]
    model, config_flat, path = load_model(run_dir)
    if config_flat.get("task") != NAME or config_flat.get("dataset_build_sha256") != key:
        raise ConfigMismatch(f"{path} was trained with task: {config_flat.get('task')} on data "
                             f"{str(config_flat.get('dataset_build_sha256'))[:12]}…, not on the dataset in "
                             f"{run_dir / 'data'} ({key[:12]}…): train this run with task: {NAME}")
    labels = pd.read_csv(run_dir / "data" / "labels.csv")
    test = PlanetDataset(run_dir / "data", "test")
    train = PlanetDataset(run_dir / "data", "train", validate=False)
    preds = predict(model, test)
    cat_test, cat_train = catalog_frame(test, labels), catalog_frame(train, labels)
    frame = preds.merge(cat_test[["pl_name", "y"]], on="pl_name")
    frame = frame[frame["y"].notna()].reset_index(drop=True)
    cat_test = cat_test.set_index("pl_name").loc[frame["pl_name"]].reset_index()
    base = baseline_predictions(cat_train[cat_train["y"].notna()], cat_test)
    scored = {"model": frame["prob"].to_numpy(), **base}
    metric_names = ("auprc", "auroc", "brier", "brier_soft", "ece", "balanced_accuracy", "mcc", "f1", "accuracy")
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, prob in scored.items():
        df = frame.assign(prob=prob)
        every = bootstrap_by_host(df, lambda d: classification_metrics(d["y"], d["prob"], d["p_habitable"]),
                                  n=bootstrap, seed=seed,
                                  desc=f"bootstrap {name:<20}" if progress else None)
        results[name] = {k: every[k] for k in metric_names}
    ablations = {}
    for m in MODALITIES:
        ab = predict(model, test, mask=[m]).merge(frame[["pl_name", "y"]], on="pl_name")
        ablations[m] = classification_metrics(ab["y"], ab["prob"], ab["p_habitable"])
    cs = preds[preds["climate_state_true"] >= 0]
    bio = preds[preds["biosignature_true"].notna()]
    tasks = {
        "climate_state_accuracy": float((cs["climate_state_true"] == cs["climate_state_pred"]).mean()) if len(cs) else None,
        "climate_state_n": int(len(cs)),
        "biosignature_auroc": auroc(bio["biosignature_true"].to_numpy(int), bio["biosignature_prob"].to_numpy()) if len(bio) else None,
        "text_perplexity": text_perplexity(model, test),
        "graph_reconstruction_auc": graph_reconstruction_auc(model, test, seed),
    }
    point = classification_metrics(frame["y"], frame["prob"], frame["p_habitable"])
    out = {
        "checkpoint": str(path), "model_preset": config_flat["model_preset"], "split": "test",
        "synthetic_catalog": bool(test.synthetic), "n_test_planets": int(len(frame)),
        "n_test_hosts": int(frame["hostname"].nunique()), "bootstrap": bootstrap,
        "model": point, "intervals": {k: {m: list(v) for m, v in r.items()} for k, r in results.items()},
        "ablations": ablations, "tasks": tasks, "verdicts": verdicts(results),
        "reliability": reliability(frame["y"], frame["prob"]).to_dict("records"),
        "predictions": frame.assign(**{f"baseline_{k}": v for k, v in base.items()}).to_dict("records"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (run_dir / "evaluation.json").write_text(json.dumps(out, indent=1, default=float))
    return out


def evaluate(cfg, progress: Optional[Callable[[int, int], None]] = None) -> Evaluation:
    """Notebook 04's evaluation of the run of ``cfg`` and its verdict (text progress bars for the
    bootstrap when ``progress`` is given)."""
    result = evaluate_run(cfg.run.run_dir, bootstrap=cfg.eval.bootstrap_samples, seed=cfg.run.seed,
                          progress=progress is not None)
    beaten = [line for line in result["verdicts"] if "BEATS" in line]
    headline = "the model beats " + (f"{len(beaten)} of {len(result['verdicts'])} baselines on at least one metric"
                                     if beaten else "NO baseline on either metric with non-overlapping intervals")
    status = "PASS" if len(beaten) == len(result["verdicts"]) else "WARN"
    action = ("" if status == "PASS" else
              "the habitability label is a formula of catalog columns, which gradient boosting on the catalog learns "
              "exactly: train task: gas_detection (the question the catalog cannot answer) instead")
    return Evaluation(status, headline, result, next_action=action)
