"""Pneumonia recall of adults and children apart, read from the saved predictions for the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from covidviz.evaluation.artifacts.saved import EvalArtifactsError, load_predictions
from covidviz.evaluation.measures.age_groups import pneumonia_recall_by_age
from covidviz.model.decision import ARGMAX_RULE, rule_from_sidecar


def pneumonia_by_age(weights_dir: Path, sidecar: dict[str, Any]) -> dict[str, Any]:
    """Pneumonia recall of adults and children apart on validation and internal test, under the model's rule
    and argmax, from the saved predictions (no model runs); empty where none are saved."""
    rules = {"covid_threshold": rule_from_sidecar(sidecar), "argmax": ARGMAX_RULE}
    if rules["covid_threshold"].covid_threshold is None:
        del rules["covid_threshold"]
    out = {}
    for split in ("val", "test"):
        try:
            p = load_predictions(weights_dir, split)
        except EvalArtifactsError:
            continue
        out[split] = {name: {g: r.as_json() for g, r in pneumonia_recall_by_age(p.sources, p.y_true,
                                                                              rule.indices(p.probs)).items()}
                      for name, rule in rules.items()}
    return out

