"""Operating points, presets and prevalence adjustment against scikit-learn: on the evaluation
prediction files (the real ones once ``weights/eval/`` exists, else the provisional toy set) and on
synthetic edge cases (a class absent from a split, perfect and useless classifiers, tied scores)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from covidviz import CLASSES
from covidviz.evaluation.artifacts.saved import SPLITS, load_metrics, load_predictions
from covidviz.evaluation.measures import operating_point

pytest_plugins = ["tests.eval_artifacts"]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

RATES = ("sensitivity", "specificity", "ppv", "npv", "f1")


def sklearn_rates(is_positive: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The five rates from scikit-learn only (NaN where undefined)."""
    kw = {"zero_division": np.nan}
    return {"sensitivity": skm.recall_score(is_positive, predicted, **kw),
            "specificity": skm.recall_score(~is_positive, ~predicted, **kw),
            "ppv": skm.precision_score(is_positive, predicted, **kw),
            "npv": skm.precision_score(~is_positive, ~predicted, **kw),
            "f1": skm.f1_score(is_positive, predicted, **kw)}


def assert_point_matches_sklearn(point: operating_point.OperatingPoint, is_positive: np.ndarray, predicted: np.ndarray) -> None:
    tn, fp, fn, tp = skm.confusion_matrix(is_positive, predicted, labels=[False, True]).ravel()
    assert (point.tp, point.fp, point.fn, point.tn) == (tp, fp, fn, tn)
    expected = sklearn_rates(is_positive, predicted)
    for name in RATES:
        assert getattr(point, name) == pytest.approx(expected[name], abs=1e-12, nan_ok=True), name


def sklearn_youden(is_positive: np.ndarray, score: np.ndarray) -> float:
    fpr, tpr, thresholds = skm.roc_curve(is_positive, score, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def sklearn_sensitivity_threshold(is_positive: np.ndarray, score: np.ndarray, target: float = 0.95) -> float:
    _, tpr, thresholds = skm.roc_curve(is_positive, score, drop_intermediate=False)
    return float(thresholds[np.isfinite(thresholds) & (tpr >= target)].max())


def check_presets(is_positive: np.ndarray, score: np.ndarray) -> None:
    youden = operating_point.youden_threshold(is_positive, score)
    if is_positive.all() or not is_positive.any():
        assert youden is None
    else:
        assert youden == sklearn_youden(is_positive, score)
        point = operating_point.at_threshold(is_positive, score, youden)
        fpr, tpr, _ = skm.roc_curve(is_positive, score)
        assert point.sensitivity + point.specificity - 1 == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    sens95 = operating_point.sensitivity_threshold(is_positive, score)
    if not is_positive.any():
        assert sens95 is None
        return
    assert sens95 == sklearn_sensitivity_threshold(is_positive, score)
    assert skm.recall_score(is_positive, score >= sens95) >= 0.95
    higher = score[score > sens95]
    if higher.size:  # the next distinct score up no longer reaches 95%
        assert skm.recall_score(is_positive, score >= higher.min()) < 0.95


# --- the evaluation prediction files -----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SPLITS)
def split_predictions(request, eval_weights):
    return load_predictions(eval_weights, request.param)


@pytest.mark.parametrize("k", range(len(CLASSES)))
def test_thresholds_and_presets_match_sklearn_on_the_prediction_files(split_predictions, k):
    is_positive, score = operating_point.one_vs_rest(split_predictions.y_true, split_predictions.probs, k)
    thresholds = {0.0, 0.25, 1 / 3, 0.5, 0.9, 1.0, *np.quantile(score, [0.1, 0.5, 0.9])}
    for name in ("youden", "sens95"):
        preset = operating_point.preset_threshold(name, is_positive, score)
        if preset is not None:
            thresholds.add(preset)
    for t in sorted(thresholds):
        assert_point_matches_sklearn(operating_point.at_threshold(is_positive, score, t), is_positive, score >= t)
    check_presets(is_positive, score)


@pytest.mark.parametrize("k", range(len(CLASSES)))
def test_argmax_rule_matches_sklearn_and_metrics_json(split_predictions, eval_weights, k):
    y, probs = split_predictions.y_true, split_predictions.probs
    point = operating_point.argmax_rule(y, probs, k)
    assert point.threshold is None and point.rule == "argmax"
    assert_point_matches_sklearn(point, y == k, probs.argmax(1) == k)
    report = load_metrics(eval_weights)["splits"][split_predictions.split]["overall"]
    np.testing.assert_array_equal(skm.confusion_matrix(y, probs.argmax(1), labels=[0, 1, 2]),
                                  report["confusion_matrix"])
    for name, key in zip(RATES, ("sensitivity", "specificity", "precision", "npv", "f1")):
        stored = report["per_class"][CLASSES[k]][key]["value"]
        assert getattr(point, name) == pytest.approx(np.nan if stored is None else stored, abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("k", range(len(CLASSES)))
def test_prevalence_adjusted_values_match_sklearn_reweighting(split_predictions, k):
    is_positive, score = operating_point.one_vs_rest(split_predictions.y_true, split_predictions.probs, k)
    if is_positive.all() or not is_positive.any():
        pytest.skip("prevalence adjustment needs positives and negatives")
    point = operating_point.argmax_rule(split_predictions.y_true, split_predictions.probs, k)
    own = operating_point.adjusted_predictive_values(point.sensitivity, point.specificity, point.prevalence)
    assert own == pytest.approx((point.ppv, point.npv), abs=1e-12, nan_ok=True)
    predicted = split_predictions.probs.argmax(1) == k
    for prevalence in (0.01, 0.05, 0.2, 0.5, 0.9):
        weight = np.where(is_positive, prevalence / is_positive.sum(), (1 - prevalence) / (~is_positive).sum())
        kw = {"sample_weight": weight, "zero_division": np.nan}
        expected = (skm.precision_score(is_positive, predicted, **kw),
                    skm.precision_score(~is_positive, ~predicted, **kw))
        assert operating_point.adjusted_predictive_values(point.sensitivity, point.specificity, prevalence) == pytest.approx(
            expected, abs=1e-12, nan_ok=True)


# --- synthetic edge cases ------------------------------------------------------------------------------------------


@pytest.fixture(params=range(4))
def tied_scores(request):
    rng = np.random.default_rng(request.param)
    y = rng.random(400) < 0.3
    return y, np.round(rng.random(400) * 0.6 + y * 0.35, 2)  # two decimals: many ties


def test_tied_scores_match_sklearn(tied_scores):
    y, s = tied_scores
    check_presets(y, s)
    for t in np.unique(s)[::7]:
        assert_point_matches_sklearn(operating_point.at_threshold(y, s, t), y, s >= t)


def test_sensitivity_target_is_decided_on_counts_not_floats():
    y = np.r_[np.ones(60, bool), np.zeros(40, bool)]  # 57/60 = 0.95 exactly; 0.95 * 60 is 57.00000000000001
    s = np.r_[np.linspace(0.99, 0.41, 60), np.linspace(0.4, 0.0, 40)]
    t = operating_point.sensitivity_threshold(y, s)
    assert t == pytest.approx(s[56]) and operating_point.at_threshold(y, s, t).tp == 57


def test_class_absent_from_a_split():
    y = np.zeros(20, bool)
    s = np.linspace(0, 1, 20)
    assert operating_point.youden_threshold(y, s) is None and operating_point.sensitivity_threshold(y, s) is None
    point = operating_point.at_threshold(y, s, 0.5)
    assert np.isnan(point.sensitivity) and point.f1 == 0.0 and point.specificity == pytest.approx(0.5)
    assert_point_matches_sklearn(point, y, s >= 0.5)
    assert operating_point.meaningful_metrics(0, 20) == ("specificity",)
    assert "no COVID-19 images" in operating_point.undefined_note(0, 20, "COVID-19", "external (Hannover)")


def test_split_with_only_the_class():
    y, s = np.ones(20, bool), np.linspace(0, 1, 20)
    assert operating_point.youden_threshold(y, s) is None
    assert operating_point.sensitivity_threshold(y, s) == pytest.approx(s[1])  # 19 of 20 still called positive
    point = operating_point.at_threshold(y, s, 0.5)
    assert np.isnan(point.specificity) and point.sensitivity == 0.5
    assert operating_point.meaningful_metrics(20, 0) == ("sensitivity",)
    assert "Only sensitivity is meaningful" in operating_point.undefined_note(20, 0, "COVID-19", "external (Hannover)")
    assert operating_point.undefined_note(5, 5, "COVID-19", "test") is None


def test_perfect_classifier():
    y = np.r_[np.ones(20, bool), np.zeros(30, bool)]
    s = np.r_[np.linspace(0.6, 1, 20), np.linspace(0, 0.5, 30)]
    youden = operating_point.youden_threshold(y, s)
    assert youden == pytest.approx(0.6)  # the highest threshold with J = 1: the lowest positive score
    point = operating_point.at_threshold(y, s, youden)
    assert (point.sensitivity, point.specificity, point.ppv, point.npv, point.f1) == (1, 1, 1, 1, 1)
    assert operating_point.adjusted_predictive_values(1.0, 1.0, 0.01) == (1.0, 1.0)
    check_presets(y, s)


def test_useless_classifier():
    y, s = np.r_[np.ones(10, bool), np.zeros(10, bool)], np.full(20, 0.4)
    assert operating_point.youden_threshold(y, s) == 0.4 and operating_point.sensitivity_threshold(y, s) == 0.4
    point = operating_point.at_threshold(y, s, 0.4)
    assert (point.sensitivity, point.specificity) == (1.0, 0.0)
    ppv, npv = operating_point.adjusted_predictive_values(point.sensitivity, point.specificity, 0.1)
    assert ppv == pytest.approx(0.1) and np.isnan(npv)  # PPV falls to the prevalence; nothing is called negative
    check_presets(y, s)


def test_prevalence_bounds_and_a_counted_population():
    # 1000 people at prevalence 0.1: 100 sick, of whom sensitivity 0.9 finds 90 (10 missed); 900 healthy, of
    # whom specificity 0.8 clears 720 (180 false alarms). PPV = 90 / (90 + 180) = 1/3, NPV = 720 / (720 + 10).
    assert operating_point.adjusted_predictive_values(0.9, 0.8, 0.1) == pytest.approx((1 / 3, 72 / 73))
    assert operating_point.adjusted_predictive_values(0.9, 0.8, 0.0) == pytest.approx((0.0, 1.0))
    assert operating_point.adjusted_predictive_values(0.9, 0.8, 1.0) == pytest.approx((1.0, 0.0))
    assert all(np.isnan(operating_point.adjusted_predictive_values(np.nan, 0.8, 0.3)))
    with pytest.raises(ValueError):
        operating_point.adjusted_predictive_values(0.9, 0.8, 1.5)


def test_argmax_rule_as_a_threshold_range():
    probs = np.array([[0.6, 0.3, 0.1], [0.45, 0.5, 0.05], [0.4, 0.3, 0.3], [0.2, 0.1, 0.7]])
    y = np.array([0, 1, 0, 2])
    point = operating_point.argmax_rule(y, probs, 0)
    assert (point.tp, point.fp, point.fn, point.tn) == (2, 0, 0, 2)
    assert operating_point.argmax_threshold_range(probs, 0) == (0.4, 0.45)  # called at 0.40, not at 0.45: no single threshold
    lowest, highest = operating_point.argmax_threshold_range(probs, 2)
    assert (lowest, highest) == (0.7, 0.3)
    assert operating_point.argmax_threshold_range(probs[:1], 1) == (pytest.approx(np.nan, nan_ok=True), 0.3)
