"""Classification metrics: scikit-learn's, with the conventions the rest of the code relies on.

Everything takes integer labels ``y_true`` and either integer predictions or an N x K probability
matrix, so the same code serves training, evaluation and the dashboard. Where a metric is undefined
(a class absent from a split) these return NaN instead of scikit-learn's warning or exception, so a
page can show "n/a" and ``metrics.json`` can store null.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

CONFIDENCE_BINS = 10  # equal-width top-label confidence bins: the reliability diagram's, and so the ECE's


def _quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a scikit-learn metric whose undefined parts we report as NaN ourselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*args, **kwargs)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted; all zeros for no images (scikit-learn raises there)."""
    if len(y_true) == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return skm.confusion_matrix(np.asarray(y_true, int), np.asarray(y_pred, int), labels=np.arange(n_classes))


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, NaN where the denominator is zero (or NaN): an undefined rate, not an error."""
    return float(num / den) if den > 0 else float("nan")


def binary_counts(is_positive: np.ndarray, predicted_positive: np.ndarray) -> dict[str, int]:
    """True/false positives and negatives of a yes/no decision."""
    tn, fp, fn, tp = confusion_matrix(is_positive, predicted_positive, 2).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def rates_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Sensitivity (recall), specificity, precision (PPV), NPV and F1; NaN where undefined."""
    precision, recall = safe_ratio(tp, tp + fp), safe_ratio(tp, tp + fn)
    return {"sensitivity": recall, "specificity": safe_ratio(tn, tn + fp), "precision": precision,
            "npv": safe_ratio(tn, tn + fn), "f1": safe_ratio(2 * tp, 2 * tp + fp + fn)}


def per_class_rates(matrix: np.ndarray) -> list[dict[str, float]]:
    """One-vs-rest rates for each class of a confusion matrix."""
    total = matrix.sum()
    out = []
    for k in range(matrix.shape[0]):
        tp = int(matrix[k, k])
        fn, fp = int(matrix[k].sum() - tp), int(matrix[:, k].sum() - tp)
        out.append(rates_from_counts(tp, fp, fn, int(total - tp - fn - fp)))
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes of ``range(n_classes)`` present in ``y_true`` or ``y_pred`` (scikit-learn's
    labels=None): a class that never occurs has no F1 to average."""
    present = np.intersect1d(np.arange(n_classes), np.union1d(y_true, y_pred))
    if not present.size:
        return float("nan")
    return float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def _both_classes(is_positive: np.ndarray) -> bool:
    is_positive = np.asarray(is_positive, bool)
    return bool(is_positive.any() and not is_positive.all())


def roc_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (descending, starting at +inf), one point per
    distinct score; a rate is NaN throughout when its class is absent."""
    return _quietly(skm.roc_curve, np.asarray(is_positive, bool), np.asarray(score, float), drop_intermediate=False)


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; NaN when one class is absent."""
    if not _both_classes(is_positive):
        return float("nan")
    return float(skm.roc_auc_score(np.asarray(is_positive, bool), np.asarray(score, float)))


def precision_recall_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds (ascending), ending at precision 1 / recall 0; recall is NaN without
    positives (scikit-learn would call it 1)."""
    is_positive = np.asarray(is_positive, bool)
    precision, recall, thresholds = _quietly(skm.precision_recall_curve, is_positive, np.asarray(score, float))
    return precision, recall if is_positive.any() else np.full_like(recall, np.nan), thresholds


def average_precision(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under the precision-recall curve; NaN without positives."""
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return float("nan")
    return float(skm.average_precision_score(is_positive, np.asarray(score, float)))


def reliability_bins(y: np.ndarray, probs: np.ndarray, n_bins: int = CONFIDENCE_BINS) -> list[dict[str, float]]:
    """Per confidence bin: its range, image count, mean confidence and accuracy (top label; None when empty)."""
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == np.asarray(y))
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()) if mask.any() else None,
                    "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return out


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = CONFIDENCE_BINS) -> float:
    """Top-label ECE: the gap between accuracy and mean confidence in each bin of the reliability diagram,
    weighted by the bin's share of the images, so the number and the diagram shown beside it agree."""
    bins = [b for b in reliability_bins(y_true, probs, n_bins) if b["count"]]
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean -log p(true class); probabilities are floored at 1e-12 so one confident error stays finite."""
    y_true = np.asarray(y_true, int)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0))))


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of the squared error summed over classes."""
    onehot = np.eye(probs.shape[1])[np.asarray(y_true)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
