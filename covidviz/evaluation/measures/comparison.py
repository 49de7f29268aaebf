"""The model comparison's numbers, from evaluation artifacts only: one row per model (the measures of its
``metrics.json``, with their 95% intervals), its confusion matrices and ROC curves, its macro-F1 difference
from the shipped model with a paired bootstrap interval on the same images, and the cross-validation summary.

Pure functions: predictions and reports in, JSON-ready dictionaries out. ``compare-build`` writes the result
to ``weights/comparison/comparison.json``; the Model comparison page only reads that file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.artifacts.saved import SplitPredictions
from covidviz.evaluation.measures.metrics import confusion_matrix, per_class_rates, roc_curve

COMPARED_SPLITS = ("test", "external")
ROC_GRID = np.linspace(0.0, 1.0, 101)  # false-positive rates at which each curve is stored


def macro_f1_present(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean one-vs-rest F1 over the classes present in ``y_true``: the definition of ``macro_f1`` in the
    evaluation reports (:func:`covidviz.evaluation.measures.report.statistics`), so differences match the table."""
    rates = per_class_rates(confusion_matrix(y_true, y_pred, len(CLASSES)))
    present = [rates[k]["f1"] for k in range(len(CLASSES)) if np.any(y_true == k)]
    return float(np.mean(present)) if present else float("nan")


def paired_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_resamples: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """Macro-F1 of A minus macro-F1 of B on the same images, with a 95% percentile interval from scipy's
    paired bootstrap: each resample draws images, and both models are scored on the same draw, so the
    interval reflects the models' disagreement, not the sample's difficulty twice over."""
    from scipy.stats import bootstrap

    def statistic(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return macro_f1_present(y, a) - macro_f1_present(y, b)

    y_true, pred_a, pred_b = (np.asarray(v, int) for v in (y_true, pred_a, pred_b))
    result = bootstrap((y_true, pred_a, pred_b), statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                       confidence_level=0.95, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"value": statistic(y_true, pred_a, pred_b), "ci95": [float(low), float(high)], "n": int(len(y_true)),
            "resamples": n_resamples}


def paired_rows(a: SplitPredictions, b: SplitPredictions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' predicted classes on the files both scored (same label required)."""
    index_b = {f: i for i, f in enumerate(b.files)}
    rows = [(i, index_b[f]) for i, f in enumerate(a.files) if f in index_b]
    if not rows:
        raise ValueError("the two models share no scored images, so no paired comparison is possible")
    ia, ib = (np.array(v) for v in zip(*rows))
    if not np.array_equal(a.y_true[ia], b.y_true[ib]):
        raise ValueError("the two models' prediction files disagree on the true labels of shared images")
    return a.y_true[ia], a.probs[ia].argmax(1), b.probs[ib].argmax(1)


def roc_points(pred: SplitPredictions) -> dict[str, dict[str, list[float]]]:
    """Each class's one-vs-rest ROC curve as true-positive rates on :data:`ROC_GRID` (classes absent from the
    split are left out)."""
    out = {}
    for k, name in enumerate(CLASSES):
        positive = pred.y_true == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, pred.probs[:, k])
        out[name] = {"fpr": ROC_GRID.round(2).tolist(), "tpr": np.interp(ROC_GRID, fpr, tpr).round(4).tolist()}
    return out


def table_measures(overall: dict[str, Any]) -> dict[str, Any]:
    """The table's measures from one split's ``overall`` report block (values and intervals as reported)."""
    per_class, summary = overall["per_class"], overall["summary"]
    return {"n": overall["n"], "macro_f1": summary["macro_f1"], "macro_roc_auc": summary["macro_roc_auc"],
            "f1": {c: per_class[c]["f1"] for c in CLASSES},
            "roc_auc": {c: per_class[c]["roc_auc"] for c in CLASSES},
            "covid_sensitivity": per_class["covid"]["sensitivity"],
            "covid_specificity": per_class["covid"]["specificity"]}


def model_entry(info: dict[str, Any], metrics: dict[str, Any], predictions: dict[str, SplitPredictions],
                reference: dict[str, SplitPredictions] | None, n_resamples: int = 2000) -> dict[str, Any]:
    """One model's block of comparison.json. ``info``: id, title, architecture, recipe, parameters, sizes,
    speed (whatever the caller measured); ``reference``: the shipped model's predictions (None for itself)."""
    entry = {**info, "splits": {}, "confusion": {}, "roc": {}, "macro_f1_difference": None}
    for split in COMPARED_SPLITS:
        overall = metrics["splits"][split]["overall"]
        entry["splits"][split] = table_measures(overall)
        entry["confusion"][split] = overall["confusion_matrix"]
        entry["roc"][split] = roc_points(predictions[split])
    if reference is not None:
        entry["macro_f1_difference"] = {split: paired_difference(*paired_rows(predictions[split], reference[split]),
                                                                 n_resamples=n_resamples)
                                        for split in COMPARED_SPLITS}
    return entry


def candidate_models(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison's full-recipe models that were not shipped (a reduced-recipe row is a backbone under the
    small shared budget; a candidate is a model that went through the shipping pipeline and was kept out)."""
    return [m for m in report["models"] if m["id"] != "shipped" and not m.get("reduced_recipe", True)]


def crossval_summary(fold_metrics: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-fold macro-F1, COVID-19 sensitivity and specificity on each fold's held-out patients (and on the
    external sets), with mean and sample standard deviation over the folds given (fold number to metrics)."""
    measures = {"macro_f1": lambda o: o["summary"]["macro_f1"]["value"],
                "covid_sensitivity": lambda o: o["per_class"]["covid"]["sensitivity"]["value"],
                "covid_specificity": lambda o: o["per_class"]["covid"]["specificity"]["value"]}
    out: dict[str, Any] = {"folds": [], "summary": {}}
    for k, metrics in sorted(fold_metrics.items()):
        row: dict[str, Any] = {"fold": k}
        for split in ("test", "external"):
            overall = metrics["splits"][split]["overall"]
            row[split] = {"n": overall["n"], **{name: fn(overall) for name, fn in measures.items()}}
        out["folds"].append(row)
    for split in ("test", "external"):
        out["summary"][split] = {}
        for name in measures:
            values = np.array([row[split][name] for row in out["folds"]], dtype=float)
            out["summary"][split][name] = {"mean": float(np.mean(values)),
                                           "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}
    return out
