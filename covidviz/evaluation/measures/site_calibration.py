"""Recalibrating the model for one site on its readers' verdicts, with a guard against fitting noise.

Only the temperature is refitted. It rescales the logits, so the predicted class (argmax) never changes:
agreement and the confusion matrix stay as they are, and only how far the probabilities can be trusted
moves. Per-class thresholds or biases would change decisions and need far more verdicts per class to
validate than a site usually has; they are not fitted here.

The audit log keeps probabilities, not logits. Softmax forgets only an additive constant, so
``temperature_used * log(p)`` gives back the logits up to that constant, which no temperature sees.

The guard: the verdicts are split in two halves, stratified by the reader's class; the temperature is
fitted on one and judged on the other, by the paired bootstrap of the per-verdict negative log-likelihood
difference (new minus current). A profile is proposed only when the 95% interval of that difference lies
wholly below zero: the held-out verdicts say it helps, and "no change" is excluded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.measures.calibration import fit_temperature
from covidviz.evaluation.measures.metrics import brier_score, expected_calibration_error, negative_log_likelihood
from covidviz.model.inference import softmax

MIN_PER_CLASS = 30  # verdicts of each class present, in the whole set (so about half that in each half)
MIN_CLASSES = 2  # one class alone says nothing about confidence between classes
PROBABILITY_FLOOR = 1e-7  # the audit log rounds to 1e-6: a printed 0 is "below 1e-6"


@dataclass(frozen=True)
class CalibrationOutcome:
    """What ``site calibrate`` found: whether to write a profile, and the figures that decided it."""

    accepted: bool
    reason: str
    counts: dict[str, int]
    temperature: float | None = None  # the refitted one
    current_temperature: float | None = None
    n_fit: int = 0
    n_held_out: int = 0
    held_out: dict[str, Any] | None = None  # NLL, Brier, ECE before/after, the NLL difference and its interval

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def logits_from_probabilities(probabilities: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant, from the calibrated probabilities and the temperature used."""
    probs = np.clip(np.asarray(probabilities, float), PROBABILITY_FLOOR, 1.0)
    return np.log(probs) * np.asarray(temperatures, float).reshape(-1, 1)


def stratified_halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fitting half and a held-out half, each class split evenly (seeded)."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        fit.extend(rows[: len(rows) // 2])
        held.extend(rows[len(rows) // 2:])
    return np.sort(np.array(fit, int)), np.sort(np.array(held, int))


def _per_row_nll(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))


def nll_difference(y: np.ndarray, before: np.ndarray, after: np.ndarray, n_boot: int,
                   seed: int) -> dict[str, float]:
    """Mean per-verdict NLL difference (after minus before) and its 95% interval from scipy's bootstrap. The
    two calibrations are paired by construction: one difference per verdict, resampled as one."""
    from scipy.stats import bootstrap

    diff = _per_row_nll(y, after) - _per_row_nll(y, before)
    result = bootstrap((diff,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"nll_difference": float(diff.mean()), "ci95": [float(low), float(high)]}


def recalibrate(y: np.ndarray, logits: np.ndarray, current_temperature: float, *, min_per_class: int = MIN_PER_CLASS,
                n_boot: int = 2000, seed: int = 0) -> CalibrationOutcome:
    """Fit and judge a site temperature. ``y``: the readers' classes (indices, not-assessable left out);
    ``logits``: from :func:`logits_from_probabilities`; ``current_temperature``: the one in use now."""
    y = np.asarray(y, int)
    counts = {c: int((y == k).sum()) for k, c in enumerate(CLASSES)}
    present = {c: n for c, n in counts.items() if n}
    short = {c: n for c, n in present.items() if n < min_per_class}
    have = ", ".join(f"{c} {n}" for c, n in counts.items())
    if len(present) < MIN_CLASSES:
        return CalibrationOutcome(False, f"needs verdicts of at least {MIN_CLASSES} classes, {min_per_class} each; "
                                         f"has {have}", counts, current_temperature=current_temperature)
    if short:
        return CalibrationOutcome(False, f"needs at least {min_per_class} verdicts of every class it has; has {have}",
                                  counts, current_temperature=current_temperature)
    fit, held = stratified_halves(y, seed)
    temperature = fit_temperature(logits[fit], y[fit])
    before = softmax(logits[held], current_temperature)
    after = softmax(logits[held], temperature)
    yh = y[held]
    difference = nll_difference(yh, before, after, n_boot, seed)
    held_out = {"nll_before": negative_log_likelihood(yh, before), "nll_after": negative_log_likelihood(yh, after),
                "brier_before": brier_score(yh, before), "brier_after": brier_score(yh, after),
                "ece_before": expected_calibration_error(yh, before), "ece_after": expected_calibration_error(yh, after),
                **difference}
    accepted = difference["ci95"][1] < 0
    lo, hi = difference["ci95"]
    reason = (f"held-out NLL {held_out['nll_before']:.4f} -> {held_out['nll_after']:.4f}, difference "
              f"{difference['nll_difference']:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}): ")
    reason += "improves, interval excludes no change" if accepted else "no improvement shown: profile not written"
    return CalibrationOutcome(accepted, reason, counts, temperature=temperature,
                              current_temperature=current_temperature, n_fit=int(len(fit)), n_held_out=int(len(held)),
                              held_out=held_out)
