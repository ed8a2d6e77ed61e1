import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from astrobio_lib import evaluate as ev

Y = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.2, 0.05, 0.3, 0.6, 0.45, 0.15])


def test_metrics_agree_with_scikit_learn():
    m = ev.classification_metrics(Y, P)
    pred = (P >= 0.5).astype(int)
    assert m["auprc"] == pytest.approx(skm.average_precision_score(Y, P))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(Y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(Y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(Y, P))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert m["majority_accuracy"] == pytest.approx(8 / 12) and m["prevalence"] == pytest.approx(4 / 12)


def test_single_class_gives_nan_not_an_error():
    m = ev.classification_metrics(np.zeros(5, int), np.linspace(0, 1, 5))
    assert np.isnan(m["auprc"]) and np.isnan(m["auroc"]) and np.isnan(m["mcc"])


def test_ece_known_answers():
    # equal-mass bins of 4
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    p = np.array([0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])
    # bin 1: observed 0.5 vs 0.5; bin 2: observed 0.75 vs 1.0, weighted by its half share: 0.125
    assert ev.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.125)
    assert ev.expected_calibration_error(np.array([0, 1, 0, 1]), np.full(4, 0.5), n_bins=1) == 0.0
    # always 0.9 but never positive: ECE = 0.9
    assert ev.expected_calibration_error(np.zeros(10), np.full(10, 0.9), n_bins=5) == pytest.approx(0.9)
    table = ev.reliability(y, p, n_bins=2)
    assert table["count"].tolist() == [4, 4] and table["observed"].tolist() == [0.5, 0.75]


def test_bootstrap_resamples_whole_hosts():
    # every planet of host A is positive and predicted right; host B all wrong: a host-level
    # bootstrap can only produce accuracies of 0, 0.5 or 1 in host units (planet counts 2 and 2)
    frame = pd.DataFrame({"hostname": ["A", "A", "B", "B"], "y": [1, 1, 1, 1], "prob": [0.9, 0.9, 0.1, 0.1]})
    acc = lambda d: float(((d["prob"] >= 0.5) == d["y"]).mean())  # noqa: E731
    point, low, high = ev.bootstrap_by_host(frame, acc, n=500, seed=1)
    assert point == 0.5 and low == 0.0 and high == 1.0
    # a constant metric has a zero-width interval; NaN resamples are dropped
    assert ev.bootstrap_by_host(frame, lambda d: 1.0, n=50) == (1.0, 1.0, 1.0)
    point, low, high = ev.bootstrap_by_host(frame, lambda d: float("nan"), n=20)
    assert np.isnan(low) and np.isnan(high)


def test_bootstrap_interval_covers_a_known_mean():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"hostname": [f"h{i}" for i in range(400)], "v": rng.normal(3.0, 1.0, 400)})
    point, low, high = ev.bootstrap_by_host(frame, lambda d: float(d["v"].mean()), n=400, seed=0)
    assert low < 3.0 < high and (high - low) == pytest.approx(2 * 1.96 / 20, rel=0.25)


def test_verdict_sentences():
    results = {"model": {"brier_soft": (0.05, 0.04, 0.06), "auprc": (0.9, 0.85, 0.95)},
               "majority class": {"brier_soft": (0.10, 0.08, 0.12), "auprc": (0.1, 0.05, 0.15)},
               "rule": {"brier_soft": (0.05, 0.03, 0.07), "auprc": (0.92, 0.8, 1.0)}}
    from astrobio_lib.tasks.habitability.evaluation import verdicts

    lines = verdicts(results)
    assert "BEATS" in lines[0] and "brier_soft: BEATS" in lines[0]
    assert "does NOT beat it" in lines[1]


def test_predict_refuses_unknown_modality():
    from astrobio_lib.tasks.habitability.evaluation import predict

    with pytest.raises(ValueError, match="unknown modality"):
        predict(None, None, mask=["radar"])


def test_bootstrap_of_a_metric_dict_equals_per_metric_bootstraps():
    frame = pd.DataFrame({"hostname": [f"h{i // 2}" for i in range(12)], "y": Y, "prob": P})
    both = ev.bootstrap_by_host(frame, lambda d: {"a": float(d["prob"].mean()), "b": float(d["y"].mean())}, n=50, seed=3)
    assert both["a"] == ev.bootstrap_by_host(frame, lambda d: float(d["prob"].mean()), n=50, seed=3)
    assert both["b"] == ev.bootstrap_by_host(frame, lambda d: float(d["y"].mean()), n=50, seed=3)
