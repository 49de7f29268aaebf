"""Classification metrics as pure numpy functions (checked against scikit-learn in the tests).

Everything takes integer labels ``y_true`` and either integer predictions or an
N x K probability matrix, so the same code serves training, evaluation and the dashboard.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted, as in scikit-learn."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def binary_counts(is_positive: np.ndarray, predicted_positive: np.ndarray) -> dict[str, int]:
    is_positive, predicted_positive = np.asarray(is_positive, bool), np.asarray(predicted_positive, bool)
    return {"tp": int(np.sum(is_positive & predicted_positive)), "fp": int(np.sum(~is_positive & predicted_positive)),
            "fn": int(np.sum(is_positive & ~predicted_positive)), "tn": int(np.sum(~is_positive & ~predicted_positive))}


def rates_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Sensitivity (recall), specificity, precision (PPV), NPV and F1; NaN where undefined."""
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"sensitivity": recall, "specificity": _ratio(tn, tn + fp), "precision": precision,
            "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


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
    """Mean F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's labels=None)."""
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    present = [k for k in range(n_classes) if matrix[k].sum() + matrix[:, k].sum() > 0]
    f1 = [per_class_rates(matrix)[k]["f1"] for k in present]
    return float(np.mean(np.nan_to_num(f1, nan=0.0))) if f1 else float("nan")


def roc_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (descending, starting at +inf), ties grouped."""
    is_positive = np.asarray(is_positive, bool)
    order = np.argsort(-np.asarray(score, float), kind="mergesort")
    score_sorted, pos_sorted = np.asarray(score, float)[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score_sorted)), len(score_sorted) - 1]
    tps, fps = np.cumsum(pos_sorted)[last_of_tie], np.cumsum(~pos_sorted)[last_of_tie]
    n_pos, n_neg = is_positive.sum(), (~is_positive).sum()
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(fps) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, score_sorted[last_of_tie]]


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids); NaN when one class is absent."""
    is_positive = np.asarray(is_positive, bool)
    if is_positive.all() or not is_positive.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(is_positive, score)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds, thresholds ascending, ending at precision 1 / recall 0 (as scikit-learn)."""
    is_positive = np.asarray(is_positive, bool)
    order = np.argsort(-np.asarray(score, float), kind="mergesort")
    score_sorted, pos_sorted = np.asarray(score, float)[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score_sorted)), len(score_sorted) - 1]
    tps = np.cumsum(pos_sorted)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / is_positive.sum() if is_positive.any() else np.full(len(tps), np.nan)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], score_sorted[last_of_tie][::-1]


def average_precision(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under the precision-recall curve (scikit-learn's definition)."""
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(is_positive, score)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == np.asarray(y_true)).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of the squared error summed over classes."""
    onehot = np.eye(probs.shape[1])[np.asarray(y_true)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
