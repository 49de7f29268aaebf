"""The one decision rule: from calibrated probabilities (and the checks on the input) to a class, or none.

Every place that shows or writes a class (Diagnose, ``predict``, ``batch``, the DICOM SR, the audit log, the
evaluation pages) asks this module, so they cannot disagree. The rule is the model's: fitted on validation
predictions only (``python -m covidviz fit-decision``) and recorded in its sidecar under ``"decision"``. A
sidecar without one (an older or a comparison model) keeps the argmax rule.

The fitted rule aims at a screening point: COVID-19 is called when ``p(covid) >= covid_threshold``, a
threshold chosen on validation for COVID-19 sensitivity >= the target at the best specificity; otherwise the
larger of the two other probabilities names the class. Argmax alone moved COVID-19 sensitivity and
specificity by about ±0.07 between cross-validation folds, with no say over where the point falls.

No class at all (an abstention) where there is none to give: an input unlike the films the model was trained
on (beyond the OOD guard's threshold), or one in which no plausible pair of lungs was found. A Parquet column
or a structured report read by a machine does not read warnings; a missing class it cannot misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidviz import CLASSES

DECISION_KEY = "decision"
COVID = CLASSES.index("covid")
ARGMAX, COVID_THRESHOLD = "argmax", "covid_threshold"
NO_LUNGS_REASON = "no plausible pair of lungs found"
COLOUR_REASON = "a colour picture, not a radiograph (radiographs are grayscale)"


@dataclass(frozen=True)
class DecisionRule:
    """``covid_threshold`` None: argmax; else COVID-19 at ``p(covid) >= covid_threshold``, otherwise the
    argmax of the other two classes."""

    covid_threshold: float | None = None

    @property
    def name(self) -> str:
        return ARGMAX if self.covid_threshold is None else COVID_THRESHOLD

    @property
    def description(self) -> str:
        """One line for a caption or a report."""
        if self.covid_threshold is None:
            return "argmax rule (the most probable class)"
        return (f"COVID-19 when p(COVID-19) ≥ {self.covid_threshold:.3f} (screening point fitted on validation), "
                "else the more probable of pneumonia and normal")

    def indices(self, probs: np.ndarray) -> np.ndarray:
        """The class index of each row of an N x K probability matrix (CLASSES order)."""
        probs = np.atleast_2d(np.asarray(probs, float))
        if self.covid_threshold is None:
            return probs.argmax(axis=1)
        others = probs.copy()
        others[:, COVID] = -np.inf
        return np.where(probs[:, COVID] >= self.covid_threshold, COVID, others.argmax(axis=1))

    def label(self, probabilities: Mapping[str, float] | np.ndarray) -> str:
        """The class name for one image's probabilities (a class -> probability mapping, or a row)."""
        if isinstance(probabilities, Mapping):
            probabilities = [float(probabilities[c]) for c in CLASSES]
        return CLASSES[int(self.indices(np.asarray(probabilities, float))[0])]


ARGMAX_RULE = DecisionRule()


def rule_from_sidecar(sidecar: Mapping[str, Any] | None) -> DecisionRule:
    """The rule a model's sidecar records; argmax when it records none (older and comparison models)."""
    recorded = (sidecar or {}).get(DECISION_KEY) or {}
    if recorded.get("rule") != COVID_THRESHOLD:
        return ARGMAX_RULE
    return DecisionRule(covid_threshold=float(recorded["covid_threshold"]))


def abstention_reason(ood_distance: float | None, ood_threshold: float | None,
                      lungs_plausible: bool | None, colourful: bool) -> str | None:
    """Why no class is given for an image (short, for a JSON field, an SR and the page), or None when one is.
    ``None`` inputs mean the check does not exist for this model and cannot cause an abstention.

    ``colourful`` (the upload was a colour picture) is checked apart from the feature distance: a colour
    photograph can lie as close to the training films' features as an unusual film does (README, OOD guard)."""
    reasons = []
    if colourful:
        reasons.append(COLOUR_REASON)
    if ood_distance is not None and ood_threshold is not None and ood_distance > ood_threshold:
        reasons.append(f"unlike the films the model was trained on (OOD distance {ood_distance:.0f} > threshold "
                       f"{ood_threshold:.0f})")
    if lungs_plausible is False:
        reasons.append(NO_LUNGS_REASON)
    return "; ".join(reasons) or None
