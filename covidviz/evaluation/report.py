"""Metric reports for one set of predictions: per class, macro, per source, with bootstrap CIs."""

from __future__ import annotations

from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.metrics import (
    average_precision,
    binary_counts,
    brier_score,
    confusion_matrix,
    expected_calibration_error,
    rates_from_counts,
    roc_auc,
)

RATE_NAMES = ("sensitivity", "specificity", "precision", "npv", "f1")


def class_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict[str, float]:
    """One-vs-rest metrics of class ``k`` under the argmax rule, plus ROC AUC and AP of p_k."""
    rates = rates_from_counts(**binary_counts(y == k, probs.argmax(1) == k))
    return {**rates, "roc_auc": roc_auc(y == k, probs[:, k]), "average_precision": average_precision(y == k, probs[:, k])}


def summary(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy and macro averages over the classes present in ``y``."""
    predicted = probs.argmax(1)
    present = [k for k in range(len(CLASSES)) if (y == k).any()]
    per = [class_metrics(y, probs, k) for k in present]
    out = {"accuracy": float((predicted == y).mean()) if len(y) else float("nan")}
    for name in (*RATE_NAMES, "roc_auc", "average_precision"):
        values = [m[name] for m in per if not np.isnan(m[name])]
        out[f"macro_{name}"] = float(np.mean(values)) if values else float("nan")
    return out


def _with_ci(fn, y: np.ndarray, probs: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    point = fn(y, probs)
    out: dict[str, Any] = {}
    boots = [fn(y[idx], probs[idx]) for idx in np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))]
    for name, value in point.items():
        samples = np.array([b[name] for b in boots], dtype=float)
        samples = samples[~np.isnan(samples)]
        ci = [float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))] if samples.size else [None, None]
        out[name] = {"value": None if np.isnan(value) else float(value), "ci95": ci}
    return out


def metrics_report(y: np.ndarray, probs: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything the dashboard shows for one split or source, JSON-ready (NaN as null)."""
    y = np.asarray(y, int)
    matrix = confusion_matrix(y, probs.argmax(1), len(CLASSES))
    return {
        "n": int(len(y)),
        "class_counts": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
        "confusion_matrix": matrix.tolist(),
        "per_class": {c: _with_ci(lambda yy, pp, k=k: class_metrics(yy, pp, k), y, probs, n_boot, seed)
                      for k, c in enumerate(CLASSES)},
        "summary": _with_ci(summary, y, probs, n_boot, seed),
        "ece": expected_calibration_error(y, probs) if len(y) else None,
        "brier": brier_score(y, probs) if len(y) else None,
    }

