"""How the model does at this site, measured against its readers' verdicts (pure: arrays in, figures out).

The reader's class plays the part of the truth: it is not the truth (readers err too), so the figures are
agreement with this site's readers, and the page and CLI say so. "Not assessable" verdicts count in the
number of verdicts but in no class figure. The per-class rates, their bootstrap intervals, the ECE and the
reliability bins are the evaluation pages' own (covidviz.evaluation.measures.report and .metrics); only Cohen's kappa
is added (scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from covidviz import CLASSES
from covidviz.evaluation.measures.metrics import reliability_bins
from covidviz.evaluation.measures.report import metrics_report
from covidviz.model.decision import ARGMAX_RULE, DecisionRule

MIN_MEANINGFUL = 30  # verdicts of a class below which its figures are "not yet meaningful"
SHOWN_RATES = ("sensitivity", "specificity", "precision", "npv")  # precision is the PPV


def site_figures(reader_classes: Sequence[str | None], probabilities: np.ndarray, n_boot: int = 1000,
                 seed: int = 0, min_meaningful: int = MIN_MEANINGFUL, rule: DecisionRule = ARGMAX_RULE
                 ) -> dict[str, Any]:
    """Every figure of the Site performance page for one model version, JSON-ready.

    ``reader_classes``: per verdict, the reader's class (None: not assessable); ``probabilities``: N x K,
    the probabilities the reader was shown (CLASSES order); ``rule``: the model's decision rule, which gave the
    class the reader was shown. The confusion matrix has the reader's class as rows and the model's as
    columns; ``agreement`` is the share where they are equal."""
    classes = np.array([c if c in CLASSES else None for c in reader_classes], dtype=object)
    probs = np.asarray(probabilities, float).reshape(len(classes), len(CLASSES))
    assessable = np.array([c is not None for c in classes], bool)
    y = np.array([CLASSES.index(c) for c in classes[assessable]], int)
    p = probs[assessable]
    out: dict[str, Any] = {"n_verdicts": int(len(classes)), "n_assessable": int(assessable.sum()),
                           "n_not_assessable": int((~assessable).sum()), "min_meaningful": min_meaningful}
    if len(y) == 0:
        return {**out, "agreement": None, "kappa": None,
                "confusion": [[0] * len(CLASSES) for _ in CLASSES], "ece": None,
                "per_class": {c: {"n": 0, "meaningful": False, **{r: {"value": None, "ci95": [None, None]}
                                                                   for r in SHOWN_RATES}} for c in CLASSES},
                "brier": None, "reliability": [], "class_counts": {c: 0 for c in CLASSES}}
    report = metrics_report(y, p, n_boot=n_boot, seed=seed, rule=rule)
    predicted = rule.indices(p)
    counts = report["class_counts"]
    per_class = {}
    for c in CLASSES:
        per_class[c] = {"n": counts[c], "meaningful": counts[c] >= min_meaningful,
                        **{rate: report["per_class"][c][rate] for rate in SHOWN_RATES}}
    kappa = cohen_kappa_score(y, predicted, labels=list(range(len(CLASSES)))) if len(set(y) | set(predicted)) > 1 \
        else float("nan")
    return {**out, "agreement": float((predicted == y).mean()),
            "kappa": None if np.isnan(kappa) else float(kappa),
            "confusion": report["confusion_matrix"], "class_counts": counts, "per_class": per_class,
            "ece": report["ece"], "brier": report["brier"], "reliability": reliability_bins(y, p)}


def shipped_figures(report: dict[str, Any], y: np.ndarray, probabilities: np.ndarray,
                    rule: DecisionRule = ARGMAX_RULE, n_boot: int = 200) -> dict[str, Any]:
    """The same figures for an evaluation split, to show beside the site's: ECE and bins from its
    ``metrics.json`` entry (``splits[split]``, computed once by ``evaluate``); rates, intervals, agreement and
    kappa under ``rule`` from its predictions CSV (true class indices ``y``, N x K ``probabilities``). The
    entry's own rates are argmax's: they serve as they are only when ``rule`` is argmax."""
    overall = report["overall"]
    if rule.covid_threshold is not None:
        overall = metrics_report(y, np.asarray(probabilities, float), n_boot=n_boot, rule=rule)
    predicted = rule.indices(np.asarray(probabilities, float))
    calibration = report.get("calibration", {}).get("after", {})
    return {"n_verdicts": int(overall["n"]), "n_assessable": int(overall["n"]), "n_not_assessable": 0,
            "agreement": float((predicted == y).mean()),
            "kappa": float(cohen_kappa_score(y, predicted, labels=list(range(len(CLASSES))))),
            "confusion": overall["confusion_matrix"], "class_counts": overall["class_counts"],
            "per_class": {c: {"n": overall["class_counts"][c], "meaningful": True,
                              **{r: overall["per_class"][c][r] for r in SHOWN_RATES}} for c in CLASSES},
            "ece": calibration.get("ece"), "brier": calibration.get("brier"),
            "reliability": calibration.get("reliability", [])}
