"""Metric functions against scikit-learn, on random data with ties and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from covidviz.evaluation.measures import metrics
from covidviz.evaluation.measures.calibration import fit_temperature
from covidviz.evaluation.measures.report import metrics_report
from covidviz.model.inference import softmax


@pytest.fixture(params=range(5))
def scores(request):
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.random(300) * 0.7 + y * 0.3, 1)  # rounded: many ties
    return y, s


def test_curves_and_areas_match_sklearn(scores):
    y, s = scores
    fpr, tpr, _ = metrics.roc_curve(y, s)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    p, r, t = metrics.precision_recall_curve(y, s)
    sp, sr, st = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)
    np.testing.assert_allclose(t, st)
    assert metrics.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_confusion_and_rates_match_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    matrix = metrics.confusion_matrix(y, pred, 3)
    np.testing.assert_array_equal(matrix, skm.confusion_matrix(y, pred, labels=[0, 1, 2]))
    rates = metrics.per_class_rates(matrix)
    np.testing.assert_allclose([r["precision"] for r in rates], skm.precision_score(y, pred, average=None))
    np.testing.assert_allclose([r["sensitivity"] for r in rates], skm.recall_score(y, pred, average=None))
    np.testing.assert_allclose([r["f1"] for r in rates], skm.f1_score(y, pred, average=None))
    assert metrics.macro_f1(y, pred, 3) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    spec0 = skm.recall_score(y != 0, pred != 0)
    assert rates[0]["specificity"] == pytest.approx(spec0)
    assert rates[0]["npv"] == pytest.approx(skm.precision_score(y != 0, pred != 0))


def test_perfect_and_useless_classifiers():
    y = np.array([0, 0, 1, 1, 1])
    assert metrics.roc_auc(y == 1, np.array([0.1, 0.2, 0.8, 0.9, 0.7])) == 1.0
    assert metrics.roc_auc(y == 1, np.full(5, 0.5)) == 0.5
    assert metrics.average_precision(y == 1, np.full(5, 0.5)) == pytest.approx(skm.average_precision_score(y, np.full(5, 0.5)))


def test_a_class_absent_from_a_split_gives_nan_not_a_crash():
    y = np.zeros(10, int)  # only covid, as in the Hannover set
    probs = softmax(np.random.default_rng(0).normal(size=(10, 3)))
    assert np.isnan(metrics.roc_auc(y == 0, probs[:, 0]))
    assert np.isnan(metrics.average_precision(y == 1, probs[:, 1]))
    report = metrics_report(y, probs, n_boot=50)
    assert report["per_class"]["pneumonia"]["sensitivity"]["value"] is None
    assert report["per_class"]["covid"]["sensitivity"]["value"] == pytest.approx(float(np.mean(probs.argmax(1) == 0)))
    assert report["summary"]["macro_f1"]["value"] == pytest.approx(report["per_class"]["covid"]["f1"]["value"])


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    probs = softmax(np.eye(3)[y] * 2 + rng.normal(size=(400, 3)))
    report = metrics_report(y, probs, n_boot=300)
    acc = report["summary"]["accuracy"]
    assert acc["ci95"][0] < acc["value"] < acc["ci95"][1]
    assert acc["ci95"][1] - acc["ci95"][0] < 0.15


# Four images, three classes. Top-label confidence, correct?: 0.95 yes, 0.91 no, 0.55 yes, 0.52 yes.
HAND_Y = np.array([0, 2, 1, 0])
HAND_PROBS = np.array([[0.95, 0.03, 0.02], [0.91, 0.05, 0.04], [0.30, 0.55, 0.15], [0.52, 0.40, 0.08]])


def test_ece_by_hand_on_the_reliability_diagrams_bins():
    # Ten bins of width 0.1. Bin [0.9, 1.0): 0.95 and 0.91, accuracy 1/2, mean confidence 0.93, gap 0.43.
    # Bin [0.5, 0.6): 0.55 and 0.52, accuracy 1, mean confidence 0.535, gap 0.465.
    # ECE = 2/4 * 0.43 + 2/4 * 0.465 = 0.4475. (Fifteen bins, the old ECE's, would give every image its own
    # bin: (0.05 + 0.91 + 0.45 + 0.48) / 4 = 0.4725.)
    assert metrics.expected_calibration_error(HAND_Y, HAND_PROBS) == pytest.approx(0.4475)
    bins = metrics.reliability_bins(HAND_Y, HAND_PROBS)
    assert len(bins) == metrics.CONFIDENCE_BINS == 10
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert (bins[9]["accuracy"], bins[9]["confidence"]) == (0.5, pytest.approx(0.93))


def test_ece_of_a_calibrated_and_an_overconfident_model():
    # Every image at confidence 0.75 (one bin), 3 of 4 right: calibrated, ECE 0. Then all wrong: ECE 0.75.
    probs = np.tile([0.75, 0.25, 0.0], (4, 1))
    assert metrics.expected_calibration_error(np.array([0, 0, 0, 1]), probs) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(np.array([1, 1, 1, 1]), probs) == pytest.approx(0.75)


def test_brier_and_nll_by_hand():
    # Brier, squared errors summed per image: 0.05² + 0.03² + 0.02² = 0.0038; 0.91² + 0.05² + 0.96² = 1.7522;
    # 0.30² + 0.45² + 0.15² = 0.315; 0.48² + 0.40² + 0.08² = 0.3968; mean 2.4678 / 4 = 0.61695.
    assert metrics.brier_score(HAND_Y, HAND_PROBS) == pytest.approx(0.61695)
    # NLL: -(ln 0.95 + ln 0.04 + ln 0.55 + ln 0.52) / 4 = (0.05129 + 3.21888 + 0.59784 + 0.65393) / 4 = 1.13049
    assert metrics.negative_log_likelihood(HAND_Y, HAND_PROBS) == pytest.approx(1.13049, abs=1e-5)
    assert metrics.negative_log_likelihood(HAND_Y, HAND_PROBS) == pytest.approx(skm.log_loss(HAND_Y, HAND_PROBS))


def test_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(size=(4000, 3)) * 2
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    fitted = fit_temperature(true_logits * 2.5, y)  # a model 2.5x too confident
    assert fitted == pytest.approx(2.5, rel=0.1)
