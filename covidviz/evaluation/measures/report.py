"""Metric reports for one set of predictions: per class, macro, per source, with bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.measures.metrics import (
    average_precision,
    brier_score,
    confusion_matrix,
    expected_calibration_error,
    per_class_rates,
    roc_auc,
)
from covidviz.model.decision import ARGMAX_RULE, DecisionRule

Statistics = dict[str, dict[str, float]]  # {class: {metric: value}, ..., "summary": {metric: value}}


def statistics(y: np.ndarray, probs: np.ndarray, rule: DecisionRule = ARGMAX_RULE) -> Statistics:
    """Every reported number of one sample, by class name and "summary": one-vs-rest rates of each class under
    ``rule`` (argmax unless given) with ROC AUC and AP of ``p_k``, then accuracy and macro averages over the
    classes present in ``y``."""
    matrix = confusion_matrix(y, rule.indices(probs), len(CLASSES))
    per_class = {c: {**rates, "roc_auc": roc_auc(y == k, probs[:, k]),
                     "average_precision": average_precision(y == k, probs[:, k])}
                 for k, (c, rates) in enumerate(zip(CLASSES, per_class_rates(matrix)))}
    present = [per_class[c] for k, c in enumerate(CLASSES) if (y == k).any()]
    summary = {"accuracy": float(np.trace(matrix) / len(y)) if len(y) else float("nan")}
    for name in per_class[CLASSES[0]]:
        values = [m[name] for m in present if not np.isnan(m[name])]
        summary[f"macro_{name}"] = float(np.mean(values)) if values else float("nan")
    return {**per_class, "summary": summary}


def bootstrap(fn: Callable[[np.ndarray, np.ndarray], Statistics], y: np.ndarray, probs: np.ndarray, n_boot: int,
              seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Each statistic's value and 95% percentile interval over images resampled with replacement.

    The resamples are drawn once and ``fn`` runs once on each, so every statistic sees the same resamples
    (paired) and none is recomputed. Resamples where a statistic is undefined are left out of its interval.
    """
    point = fn(y, probs)
    draws = [fn(y[idx], probs[idx]) for idx in np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group, values in point.items():
        out[group] = {}
        for name, value in values.items():
            samples = np.array([d[group][name] for d in draws], dtype=float)
            samples = samples[~np.isnan(samples)]
            ci = [float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))] if samples.size else [None, None]
            out[group][name] = {"value": None if np.isnan(value) else float(value), "ci95": ci}
    return out


def format_interval(lo: float | None, hi: float | None) -> str:
    """A 95% interval as "lo–hi" (three decimals), or "" when it is undefined."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f"{lo:.3f}–{hi:.3f}"


def metrics_report(y: np.ndarray, probs: np.ndarray, n_boot: int = 1000, seed: int = 0,
                   rule: DecisionRule = ARGMAX_RULE) -> dict[str, Any]:
    """Everything the dashboard shows for one split or source, JSON-ready (NaN as null); class decisions by
    ``rule`` (argmax unless given: ``metrics.json`` keeps argmax, the rule every model has)."""
    y = np.asarray(y, int)
    with_ci = bootstrap(partial(statistics, rule=rule), y, probs, n_boot, seed)
    return {
        "n": int(len(y)),
        "class_counts": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
        "confusion_matrix": confusion_matrix(y, rule.indices(probs), len(CLASSES)).tolist(),
        "per_class": {c: with_ci[c] for c in CLASSES},
        "summary": with_ci["summary"],
        "ece": expected_calibration_error(y, probs) if len(y) else None,
        "brier": brier_score(y, probs) if len(y) else None,
    }
