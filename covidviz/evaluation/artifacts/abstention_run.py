"""``python -m covidviz measure-abstention``: per film, would the model give a class?

The prediction CSVs hold probabilities only; whether a film is out of distribution or has no plausible lungs
needs the model's features and the lung segmenter, so this runs the real model over validation, internal test
and the external sets once (tens of minutes on a busy 2-core CPU) and writes
``weights/eval/abstention_per_film.csv`` (file, split, OOD distance, lungs plausible). Kept apart from
:mod:`covidviz.evaluation.artifacts.abstention_artifact` so that the model card's readers never import the
evaluation run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from covidviz.evaluation.artifacts.abstention_artifact import PER_FILM_FILE, SETS
from covidviz.evaluation.artifacts.saved import eval_dir


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
        lungs = read["lungs_plausible"] if predictor.segmenter is not None else np.ones(len(splits[split]), bool)
        frames.append(pd.DataFrame({"file": [r.file for r in splits[split]], "split": split,
                                    "ood_distance": np.round(predictor.guard.distance(read["pooled"]), 4),
                                    "lungs_plausible": np.asarray(lungs, bool)}))
    path = eval_dir(weights_dir) / PER_FILM_FILE
    pd.concat(frames).to_csv(path, index=False)
    return path
