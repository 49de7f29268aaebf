"""How often the model gives no class, per evaluation set, from ``weights/eval/abstention_per_film.csv``.

The summary (``abstention.json``) is computed from that file (written by
:mod:`covidviz.evaluation.artifacts.abstention_run`, which runs the model) and the prediction CSVs alone, so a
test and the model card can recompute and read it without the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidviz.evaluation.artifacts.decision_artifact import EXTERNAL_SOURCES
from covidviz.evaluation.artifacts.saved import eval_dir, load_predictions
from covidviz.evaluation.measures.abstention import abstention_summary
from covidviz.model.decision import rule_from_sidecar
from covidviz.model.ood import load_guard
from covidviz.verified import read_sidecar

PER_FILM_FILE, SUMMARY_FILE = "abstention_per_film.csv", "abstention.json"
SETS = ("val", "test", "external")


def summarise(weights_dir: str | Path) -> dict[str, Any]:
    """Per set (validation, internal test, each external set): abstentions and the abstained films the decision
    rule would have called right; from the per-film file and the prediction CSVs (no model run)."""
    weights_dir = Path(weights_dir)
    per_film = pd.read_csv(eval_dir(weights_dir) / PER_FILM_FILE)
    guard = load_guard(weights_dir)
    sidecar = read_sidecar(weights_dir)
    rule = rule_from_sidecar(sidecar)
    out: dict[str, Any] = {"weights_sha256": sidecar["weights_sha256"],
                           "ood_threshold": guard.threshold, "rule": rule.name, "sets": {}}
    for split in SETS:
        predictions = load_predictions(weights_dir, split)
        films = per_film[per_film["split"] == split].set_index("file").loc[predictions.files]
        groups = {split: None} if split != "external" else {s: s for s in EXTERNAL_SOURCES}
        for name, source in groups.items():
            keep = np.ones(predictions.n, bool) if source is None else predictions.sources == source
            out["sets"][name] = abstention_summary(
                predictions.y_true[keep], predictions.probs[keep], films["ood_distance"].to_numpy()[keep],
                films["lungs_plausible"].to_numpy(bool)[keep], guard.threshold, rule)
    return out


def write_summary(weights_dir: str | Path) -> Path:
    path = eval_dir(weights_dir) / SUMMARY_FILE
    path.write_text(json.dumps(summarise(weights_dir), indent=2) + "\n")
    return path


def load_abstention(weights_dir: str | Path) -> dict[str, Any] | None:
    path = eval_dir(weights_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None
