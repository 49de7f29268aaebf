"""``python -m covidviz measure-abstention``: per film, would the model give a class? Per set, how often not.

The prediction CSVs hold probabilities only; whether a film is out of distribution or has no plausible lungs
needs the model's features and the lung segmenter, so this runs the real model over validation, internal test
and the external sets once (minutes on CPU) and writes ``weights/eval/abstention_per_film.csv`` (file, split,
OOD distance, lungs plausible). The summary (``abstention.json``) is computed from that file and the
prediction CSVs alone, so a test can recompute it without the model.
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


def measure_per_film(data_dir: str | Path, weights_dir: str | Path) -> Path:
    """Run the model over the evaluation sets and write each film's OOD distance and lung plausibility."""
    from covidviz.evaluation.artifacts.evaluate import read_split_set, records_for_splits
    from covidviz.model.predictor import Predictor
    weights_dir = Path(weights_dir)
    predictor = Predictor(weights_dir, engine="torch")
    splits = records_for_splits(data_dir, weights_dir)
    frames = []
    for split in SETS:
        read = read_split_set(predictor, data_dir, splits[split], with_cams=False)
        lungs = read["lung_field"] if predictor.segmenter is not None else np.ones(len(splits[split]), bool)
        frames.append(pd.DataFrame({"file": [r.file for r in splits[split]], "split": split,
                                    "ood_distance": np.round(predictor.guard.distance(read["pooled"]), 4),
                                    "lungs_plausible": np.asarray(lungs, bool)}))
    path = eval_dir(weights_dir) / PER_FILM_FILE
    pd.concat(frames).to_csv(path, index=False)
    return path


def summarise(weights_dir: str | Path) -> dict[str, Any]:
    """Per set (validation, internal test, each external set): abstentions and the abstained films the decision
    rule would have called right; from the per-film file and the prediction CSVs (no model run)."""
    weights_dir = Path(weights_dir)
    per_film = pd.read_csv(eval_dir(weights_dir) / PER_FILM_FILE)
    guard = load_guard(weights_dir)
    rule = rule_from_sidecar(read_sidecar(weights_dir))
    out: dict[str, Any] = {"ood_threshold": guard.threshold, "rule": rule.name, "sets": {}}
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
