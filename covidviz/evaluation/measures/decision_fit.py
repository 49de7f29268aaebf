"""Fitting the model's decision rule on validation predictions, and what it gives elsewhere (pure).

The rule itself lives in :mod:`covidviz.model.decision`; this module chooses its COVID-19 threshold and
measures it. The rule calls the validation films that the highest threshold still meeting the target sensitivity
calls, so it is the most specific rule meeting it
(:func:`~covidviz.evaluation.measures.operating_point.sensitivity_threshold`). That highest threshold is one
validation film's own probability; the rule's threshold sits halfway from it to the next lower validation
probability instead, so that no validation film lies on it. The COVID-19 call of the rule is exactly
``p(covid) >= threshold``, so its COVID-19 sensitivity and specificity are those of that threshold. Nothing here
ever sees the test or external sets while fitting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from covidviz.evaluation.measures.metrics import rates_from_counts
from covidviz.evaluation.measures.operating_point import sensitivity_threshold
from covidviz.evaluation.measures.report import bootstrap
from covidviz.model.decision import ARGMAX_RULE, COVID, COVID_THRESHOLD, DecisionRule

SCREENING_SENSITIVITY = 0.90  # issue 20: a screening point, COVID-19 sensitivity >= 0.90 at the best specificity


def fit_rule(y_true: np.ndarray, probs: np.ndarray, target: float = SCREENING_SENSITIVITY) -> DecisionRule:
    """The screening rule fitted on these (validation) predictions; ValueError without COVID-19 films."""
    score = np.asarray(probs, float)[:, COVID]
    tightest = sensitivity_threshold(np.asarray(y_true) == COVID, score, target)
    if tightest is None:
        raise ValueError("the predictions hold no COVID-19 film: a COVID-19 threshold cannot be fitted")
    return DecisionRule(covid_threshold=midway_below(score, tightest))


def midway_below(score: np.ndarray, threshold: float) -> float:
    """Halfway from ``threshold`` down to the next lower score; ``threshold`` itself when no score is lower.

    Calls (``score >= t``) are the same at both, but a threshold equal to a film's own score leaves that film's
    call to float noise: the same film read again in another process (another batch, another kernel) can come
    out a millionth lower and change sides. Halfway, every film is half a gap away from it.
    """
    below = np.asarray(score, float)
    below = below[below < threshold]
    return float((threshold + below.max()) / 2) if below.size else float(threshold)


def covid_rates(rule: DecisionRule, y_true: np.ndarray, probs: np.ndarray) -> dict[str, dict[str, float]]:
    """COVID-19 sensitivity and specificity (one vs rest) and the accuracy of a rule, as the
    ``Statistics`` shape :func:`~covidviz.evaluation.measures.report.bootstrap` resamples."""
    y_true = np.asarray(y_true, int)
    predicted = rule.indices(probs) if len(y_true) else np.zeros(0, int)
    is_covid, called = y_true == COVID, predicted == COVID  # counted here: a thousand resamples per set
    rates = rates_from_counts(tp=int((is_covid & called).sum()), fp=int((~is_covid & called).sum()),
                              fn=int((is_covid & ~called).sum()), tn=int((~is_covid & ~called).sum()))
    accuracy = float(np.mean(predicted == y_true)) if len(y_true) else float("nan")
    return {"covid": {"sensitivity": rates["sensitivity"], "specificity": rates["specificity"]},
            "summary": {"accuracy": accuracy}}


def rule_report(rule: DecisionRule, y_true: np.ndarray, probs: np.ndarray, n_boot: int, seed: int = 0
                ) -> dict[str, Any]:
    """n, positives and negatives, and each rate with its 95% bootstrap interval (null where undefined)."""
    y_true = np.asarray(y_true, int)
    with_ci = bootstrap(lambda y, p: covid_rates(rule, y, p), y_true, np.asarray(probs, float), n_boot, seed)
    return {"n": int(len(y_true)), "n_covid": int((y_true == COVID).sum()), "n_other": int((y_true != COVID).sum()),
            **with_ci["covid"], **with_ci["summary"]}


def both_rules(fitted: DecisionRule, y_true: np.ndarray, probs: np.ndarray, n_boot: int) -> dict[str, Any]:
    """The fitted rule beside argmax on the same rows and the same resamples (same seed)."""
    return {COVID_THRESHOLD: rule_report(fitted, y_true, probs, n_boot),
            "argmax": rule_report(ARGMAX_RULE, y_true, probs, n_boot)}


def mean_sd(values: list[float | None]) -> dict[str, float | None]:
    """Mean and sample SD over folds (ddof 1), leaving undefined values out; null when none is left."""
    kept = np.array([v for v in values if v is not None and np.isfinite(v)], float)
    return {"mean": float(kept.mean()) if kept.size else None,
            "sd": float(kept.std(ddof=1)) if kept.size > 1 else None, "n_folds": int(kept.size)}
