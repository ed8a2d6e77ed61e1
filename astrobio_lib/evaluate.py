"""Evaluation: metrics with host-grouped bootstrap intervals, baselines, calibration, ablations.

Targets on the held-out (test) split, grouped by host system:
- hard label ``habitable`` (rocky and in the optimistic HZ on the catalog point estimates; planets
  whose label is undetermined are left out), for AUPRC, AUROC, balanced accuracy, MCC, F1, plain
  accuracy (shown only beside the majority-class accuracy);
- soft label ``p_habitable`` (Monte-Carlo over the error bars), for the Brier score.

Baselines on the same split: majority class (train prevalence), the HZ + rocky rule on the
catalog point estimates (the hard label's own definition: perfect on it by construction, so it
says what physics alone gives), logistic regression on (log insolation, T_eff, log radius), and
scikit-learn's HistGradientBoosting on the catalog features.

The metric functions wrap scikit-learn (tested against it on fixed inputs) and return NaN instead
of raising when a sample has a single class; the expected calibration error uses equal-mass bins.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from astrobio_lib import report
from astrobio_lib.data.loader import Collate, PlanetDataset

MODALITIES = ("catalog", "climate", "graph", "spectrum", "text")


# --------------------------------------------------------------------------- metrics


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN with one class."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p)) if _two_classes(y) else float("nan")


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if _two_classes(y) else float("nan")


def brier(target: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between predicted probability and target (hard or soft)."""
    return float(np.mean((np.asarray(p, float) - np.asarray(target, float)) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-mass bins: planets sorted by predicted probability, cut into ``n_bins``
    groups of (nearly) equal size; sum over bins of (bin share) x |mean(y) - mean(p)|."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, min(n_bins, len(y)))
    return float(sum(len(b) / len(y) * abs(y[b].mean() - p[b].mean()) for b in bins if len(b)))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-mass bins: mean predicted probability, observed frequency and count per bin."""
    order = np.argsort(np.asarray(p, float), kind="stable")
    rows = [{"mean_predicted": float(np.mean(np.asarray(p)[b])), "observed": float(np.mean(np.asarray(y)[b])),
             "count": len(b)} for b in np.array_split(order, min(n_bins, max(len(p), 1))) if len(b)]
    return pd.DataFrame(rows)


def classification_metrics(y: np.ndarray, p: np.ndarray, soft: Optional[np.ndarray] = None,
                           threshold: float = 0.5) -> dict[str, float]:
    """Returns prevalence, AUPRC, AUROC, balanced accuracy, MCC, F1, accuracy, majority-class
    accuracy, Brier (vs hard, and vs soft labels when given) and ECE."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, matthews_corrcoef

    y = np.asarray(y, int)
    p = np.asarray(p, float)
    pred = (p >= threshold).astype(int)
    prevalence = float(y.mean()) if len(y) else float("nan")
    out = {
        "n": int(len(y)), "positives": int(y.sum()), "prevalence": prevalence,
        "auprc": auprc(y, p), "auroc": auroc(y, p),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if _two_classes(y) else float("nan"),
        "mcc": float(matthews_corrcoef(y, pred)) if _two_classes(y) else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "majority_accuracy": float(max(prevalence, 1 - prevalence)) if len(y) else float("nan"),
        "brier": brier(y, p), "ece": expected_calibration_error(y, p),
    }
    if soft is not None:
        out["brier_soft"] = brier(soft, p)
    return out


def bootstrap_by_host(frame: pd.DataFrame, metric: Callable[[pd.DataFrame], Any], n: int = 200,
                      seed: int = 0, level: float = 0.95, desc: Optional[str] = None):
    """Returns (point estimate, low, high): the metric on ``frame`` and the percentile interval
    over ``n`` bootstrap resamples of *host systems* (planets of one host move together).
    Resamples where the metric is undefined (NaN) are dropped. When ``metric`` returns a dict of
    numbers, returns a dict of such triples (one resampling serves every metric). ``desc``: show a
    text progress bar with this label."""
    point = metric(frame)
    as_dict = isinstance(point, dict)
    points = point if as_dict else {"_": point}
    hosts = frame["hostname"].unique()
    groups = {h: idx for h, idx in frame.groupby("hostname").indices.items()}
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {k: [] for k in points}
    draws = range(n) if desc is None else report.progress(range(n), desc=desc)
    for _ in draws:
        pick = rng.choice(hosts, size=len(hosts), replace=True)
        rows = np.concatenate([groups[h] for h in pick])
        value = metric(frame.iloc[rows])
        for k, v in (value.items() if as_dict else (("_", value),)):
            if k in stats and not np.isnan(v):
                stats[k].append(v)
    alpha = (1 - level) / 2
    out = {k: (points[k], float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if v
           else (points[k], float("nan"), float("nan")) for k, v in stats.items()}
    return out if as_dict else out["_"]


# --------------------------------------------------------------------------- model


def load_model(run_dir: str | Path, which: str = "best"):
    """Returns (model in eval mode, flat config, checkpoint path) from a run's checkpoints:
    the best one (lowest validation habitability loss) or the newest, verified by its checksum.

    Raises:
        FileNotFoundError: the run has no checkpoint (run 03_training first).
        astrobio_lib.train.checkpoint.CheckpointError: checkpoints exist but none verifies.
    """
    from astrobio_lib.models import adapters, pretrained
    from astrobio_lib.train import checkpoint as ckpt

    state, config_flat, path = ckpt.load_model_weights(Path(run_dir) / "checkpoints", which)
    base = config_flat.get("llm_checkpoint")
    if base:  # LoRA / QLoRA or a fine-tuned pretrained LLM: the base must be the one it was trained on
        found = pretrained.fingerprint_sha256(base)
        if found != config_flat.get("llm_base_sha256"):
            raise ckpt.ConfigMismatch(f"{path} was trained on the LLM checkpoint {base} with sha256 "
                                      f"{str(config_flat.get('llm_base_sha256'))[:12]}…, but that directory now "
                                      f"holds {found[:12]}…: restore the original base checkpoint")
    # evaluation computes in fp32 whatever the training precision (a 4-bit base dequantises to fp32)
    model = adapters.build({**config_flat, "precision": "fp32"})
    adapters.load_trainable_state(model, state)
    return model.eval(), config_flat, path


@torch.no_grad()
def predict(model, dataset: PlanetDataset, batch_size: int = 16, mask: Sequence[str] = ()) -> pd.DataFrame:
    """Returns one row per planet of ``dataset``: predicted P(habitable), climate state and
    biosignature probability, the targets, and the per-planet text loss; modalities in ``mask``
    are hidden from the model (ablation).

    Raises:
        ValueError: an unknown modality in ``mask``.
    """
    unknown = set(mask) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)}: one of {MODALITIES}")
    collate = Collate(dataset.graphs)
    rows = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        batch = collate(items)
        for m in mask:
            if m == "catalog":
                batch["catalog_mask"] = torch.zeros_like(batch["catalog_mask"])
            elif m == "graph":
                batch["has_graph"] = torch.zeros_like(batch["has_graph"])
                batch["graph"] = None
            else:
                batch[f"has_{m}"] = torch.zeros_like(batch[f"has_{m}"])
        out = model(batch)
        prob = torch.sigmoid(out["habitability_logit"]).numpy()
        bio = torch.sigmoid(out["biosignature_logit"]).numpy()
        state = out["climate_logits"].argmax(-1).numpy()
        for j, it in enumerate(items):
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
        FileNotFoundError: no dataset or no checkpoint in the run folder.
    """
    run_dir = Path(run_dir)
    model, config_flat, path = load_model(run_dir)
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


def evaluate_gas_run(run_dir: str | Path, draws: int = 4, bootstrap: int = 100, seed: int = 0,
                     progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Evaluates a run trained with ``task: gas_detection`` on the test host stars of its SIMULATED
    spectra: detection curves of the model and the three baselines on the same noisy draws, the
    verdict per gas and N against full-spectrum gradient boosting, retrieval R² / RMSE / interval
    coverage, and the interval calibration curve. Writes ``gas_detection_curves.csv``,
    ``gas_retrieval.csv`` and ``gas_evaluation.json``; returns the frames, the model's test predictions
    (``pred``, :func:`astrobio_lib.gas_detection.predict`) and the truth of every spectrum (``truth``).

    Raises:
        FileNotFoundError: no spectra or no checkpoint in the run folder.
        astrobio_lib.train.checkpoint.ConfigMismatch: the checkpoint was not trained on these spectra
            for this task.
    """
    from astrobio_lib import gas_detection as gd
    from astrobio_lib.data import gas_dataset
    from astrobio_lib.data import gas_spectra as gs
    from astrobio_lib.train import checkpoint as ckpt

    run_dir = Path(run_dir)
    ds = gs.load(run_dir / "data" / "gas_spectra")
    model, config_flat, path = load_model(run_dir)
    if config_flat.get("task") != "gas_detection" or config_flat.get("gas_spectra_key") != ds.manifest.get("cache_key"):
        raise ckpt.ConfigMismatch(f"{path} was trained with task: {config_flat.get('task')} on spectra "
                                  f"{str(config_flat.get('gas_spectra_key'))[:12]}…, not on the gas-detection spectra "
                                  f"in {run_dir / 'data' / 'gas_spectra'} ({str(ds.manifest.get('cache_key'))[:12]}…): "
                                  f"train this run with task: gas_detection")
    split = gs.host_split(ds.hostname, seed)
    test = gas_dataset.GasDetectionDataset(ds, split, "test", draws, seed)
    pred = gd.predict(model, test)
    curves = gd.detection_curves(ds, split, draws=draws, bootstrap=bootstrap, seed=seed, progress=progress,
                                 scorers={"model": gd.scorer(pred)})
    truth = gas_dataset.retrieval_truth(ds)
    retrieval = gd.retrieval_table(pred, truth, gas_dataset.RETRIEVAL_TARGETS)
    calibration = gd.interval_calibration(pred, truth, gas_dataset.RETRIEVAL_TARGETS)
    verdict = gd.verdicts(curves)
    curves.to_csv(run_dir / "gas_detection_curves.csv", index=False)
    retrieval.to_csv(run_dir / "gas_retrieval.csv", index=False)
    out = {"checkpoint": str(path), "simulated": True, "n_test_spectra": int((split == "test").sum()),
           "n_test_hosts": int(len(np.unique(ds.hostname[split == "test"]))), "noise_draws": draws,
           "bootstrap": bootstrap, "verdicts": verdict.to_dict("records"),
           "retrieval": retrieval.to_dict("records"), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run_dir / "gas_evaluation.json").write_text(json.dumps(out, indent=1, default=float))
    return {**out, "curves": curves, "verdict_table": verdict, "retrieval_table": retrieval,
            "calibration": calibration, "pred": pred, "truth": truth}
