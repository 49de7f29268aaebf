"""One-vs-rest operating points: what a yes/no decision on one class gives at a threshold.

A reader deciding "COVID-19 or not" needs sensitivity, specificity and predictive values at the
threshold they will actually use, and at the prevalence of the population they will use it on, not
at the mix of the test set. Everything here builds on :mod:`covidviz.evaluation.measures.metrics` (scikit-learn), so the
dashboard, ``metrics.json`` and the tests count the same way.

Convention (scikit-learn's): an image is called positive for class ``k`` when ``p_k >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidviz.evaluation.measures.metrics import (
    binary_counts,
    precision_recall_curve,
    rates_from_counts,
    roc_curve,
    safe_ratio,
)

PRESETS: dict[str, str] = {
    "decision": "The model's decision rule (COVID-19 screening threshold fitted on validation)",
    "argmax": "Argmax rule (the predicted class is this class)",
    "youden": "Youden's J optimum (max sensitivity + specificity − 1)",
    "sens95": "Highest threshold with sensitivity ≥ 0.95",
}
SENSITIVITY_TARGET = 0.95


@dataclass(frozen=True)
class OperatingPoint:
    """Binary confusion counts and rates of one decision rule (NaN where a rate is undefined)."""

    rule: str  # "argmax" or "threshold"
    threshold: float | None
    tp: int
    fp: int
    fn: int
    tn: int
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    f1: float

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.fp + self.tn

    @property
    def prevalence(self) -> float:
        """The share of positives in the evaluated images (the default prevalence)."""
        n = self.positives + self.negatives
        return self.positives / n if n else float("nan")

    @property
    def fpr(self) -> float:
        return 1.0 - self.specificity


def one_vs_rest(y_true: np.ndarray, probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(is_positive, score)`` for class ``k`` against the rest: labels ``== k`` and ``p_k``."""
    return np.asarray(y_true) == k, np.asarray(probs, float)[:, k]


def from_decisions(is_positive: np.ndarray, predicted_positive: np.ndarray, rule: str = "threshold",
                   threshold: float | None = None) -> OperatingPoint:
    counts = binary_counts(is_positive, predicted_positive)
    rates = rates_from_counts(**counts)
    return OperatingPoint(rule=rule, threshold=threshold, **counts, sensitivity=rates["sensitivity"],
                          specificity=rates["specificity"], ppv=rates["precision"], npv=rates["npv"], f1=rates["f1"])


def at_threshold(is_positive: np.ndarray, score: np.ndarray, threshold: float) -> OperatingPoint:
    """The operating point of calling an image positive when ``score >= threshold``."""
    return from_decisions(is_positive, np.asarray(score, float) >= threshold, "threshold", float(threshold))


def argmax_rule(y_true: np.ndarray, probs: np.ndarray, k: int) -> OperatingPoint:
    """The dashboard's default decision seen as a one-vs-rest operating point: "predicted class == k".

    It is what ``metrics.json`` reports (with bootstrap CIs). It is not a fixed threshold on ``p_k``:
    with three classes, ``p_k > 1/2`` always wins and ``p_k < 1/3`` never does; in between it depends
    on how the other two classes share the rest (see :func:`argmax_threshold_range`).
    """
    probs = np.asarray(probs, float)
    return from_decisions(np.asarray(y_true) == k, probs.argmax(axis=1) == k, "argmax", None)


def argmax_threshold_range(probs: np.ndarray, k: int) -> tuple[float, float]:
    """(lowest ``p_k`` the argmax rule called class k, highest ``p_k`` it did not); NaN when none.

    If the first is above the second, the argmax rule equals a threshold anywhere between them.
    """
    probs = np.asarray(probs, float)
    called = probs.argmax(axis=1) == k
    lowest = float(probs[called, k].min()) if called.any() else float("nan")
    highest = float(probs[~called, k].max()) if (~called).any() else float("nan")
    return lowest, highest


def adjusted_predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """PPV and NPV at another prevalence (Bayes' theorem); NaN where undefined.

    PPV = sens·prev / (sens·prev + (1 − spec)·(1 − prev)),
    NPV = spec·(1 − prev) / (spec·(1 − prev) + (1 − sens)·prev).
    At the split's own prevalence they equal the counted PPV and NPV.
    """
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"Prevalence must lie in [0, 1], got {prevalence}.")
    sens, spec, prev = float(sensitivity), float(specificity), float(prevalence)
    ppv = safe_ratio(sens * prev, sens * prev + (1 - spec) * (1 - prev))
    npv = safe_ratio(spec * (1 - prev), spec * (1 - prev) + (1 - sens) * prev)
    return ppv, npv


def youden_threshold(is_positive: np.ndarray, score: np.ndarray) -> float | None:
    """The threshold maximising Youden's J = sensitivity + specificity − 1 (the highest among ties).

    Candidates are the distinct scores (``roc_curve``'s finite thresholds); ``None`` when the split has
    no positives or no negatives, where specificity or sensitivity, hence J, is undefined.
    """
    is_positive = np.asarray(is_positive, bool)
    if is_positive.all() or not is_positive.any():
        return None
    fpr, tpr, thresholds = roc_curve(is_positive, score)
    j = tpr[1:] - fpr[1:]
    return float(thresholds[1:][int(np.argmax(j))])


def sensitivity_threshold(is_positive: np.ndarray, score: np.ndarray,
                          target: float = SENSITIVITY_TARGET) -> float | None:
    """The highest threshold whose sensitivity is still ``>= target``; ``None`` without positives.

    Higher thresholds give fewer false positives, so this is the most specific rule meeting the target.
    """
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return None
    _, tpr, thresholds = roc_curve(is_positive, score)
    n_pos = int(is_positive.sum())
    true_positives = np.rint(tpr[1:] * n_pos)  # back to counts, so 57/60 >= 0.95 is decided exactly
    enough = true_positives >= target * n_pos - 1e-9
    return float(thresholds[1:][int(np.argmax(enough))])


def preset_threshold(preset: str, is_positive: np.ndarray, score: np.ndarray) -> float | None:
    """Threshold of a threshold preset (``youden`` or ``sens95``); ``None`` when it is undefined."""
    if preset == "youden":
        return youden_threshold(is_positive, score)
    if preset == "sens95":
        return sensitivity_threshold(is_positive, score)
    raise ValueError(f"{preset!r} is not a threshold preset")


def meaningful_metrics(positives: int, negatives: int) -> tuple[str, ...]:
    """The rates worth showing when a split lacks positives or negatives (the others are undefined or
    trivial: with no negatives every call of "positive" is right, so PPV is 1 and NPV 0 or undefined)."""
    if positives and negatives:
        return ("sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc", "average_precision")
    if positives:
        return ("sensitivity",)
    return ("specificity",) if negatives else ()


def undefined_note(positives: int, negatives: int, class_title: str, split_title: str) -> str | None:
    """Plain words for a split in which one side of the one-vs-rest question is missing."""
    if positives and negatives:
        return None
    if not positives and not negatives:
        return f"The {split_title} split has no images."
    if not negatives:
        return (f"Every image of the {split_title} split is {class_title}: there are no negatives, so specificity, "
                "ROC AUC and Youden's J are undefined and PPV, NPV, F1 and average precision are trivial. "
                "Only sensitivity is meaningful here.")
    return (f"The {split_title} split has no {class_title} images: sensitivity, PPV, F1, ROC AUC, average "
            "precision and the threshold presets are undefined. Only specificity (how often the model correctly "
            f"says 'not {class_title}') is meaningful here.")


def curves(is_positive: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """ROC (fpr, tpr) and precision-recall points of ``score`` with their thresholds, for the figures."""
    fpr, tpr, roc_thr = roc_curve(is_positive, score)
    precision, recall, pr_thr = precision_recall_curve(is_positive, score)
    return {"fpr": fpr, "tpr": tpr, "roc_thresholds": roc_thr, "precision": precision, "recall": recall,
            "pr_thresholds": pr_thr}
