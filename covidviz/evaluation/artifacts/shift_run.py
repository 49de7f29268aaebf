"""``python -m covidviz measure-shift``: does the answer survive a change in how the film was made?

Runs the real model (ONNX Runtime, the fastest engine here) over a seeded, class-stratified sample of validation
films, once clean and once under each transform of :mod:`covidviz.data.acquisition`, through the same path as an
upload (:meth:`~covidviz.model.predictor.Predictor.predict_xrays`: lung segmenter, classifier, OOD guard, the
model's decision rule), and writes ``weights/eval/shift_per_film.csv``; the summary is
:mod:`covidviz.evaluation.artifacts.shift_artifact`'s, kept apart so the model card never imports the run.
Validation only: nothing here is chosen on the test or external sets.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from covidviz import CLASSES
from covidviz.data.acquisition import TRANSFORMS
from covidviz.evaluation.artifacts.saved import eval_dir
from covidviz.evaluation.artifacts.shift_artifact import CLEAN, COLUMNS, PER_FILM_FILE

if TYPE_CHECKING:
    from covidviz.model.predictor import Predictor

DEFAULT_FILMS, DEFAULT_SEED = 300, 20
CHUNK = 16  # films read and transformed at once (x 7 passes)


def film_rng(seed: int, file: str, transform: str) -> np.random.Generator:
    """The generator of one film under one transform: seeded by the sample seed, the file and the transform's
    name, so a film looks the same whatever else is in the sample and in whatever order it is read."""
    return np.random.default_rng([seed, zlib.crc32(file.encode()), zlib.crc32(transform.encode())])


def measure_films(predictor: Predictor, grays: Sequence[np.ndarray], files: Sequence[str], true: Sequence[str],
                  seed: int, transforms: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-film rows (:data:`~covidviz.evaluation.artifacts.shift_artifact.COLUMNS`) for the clean films and each
    transform: the class by the model's decision rule (given even where the film would get none: the
    abstention is the ``flagged`` and ``lungs_plausible`` columns), the OOD distance and the two checks."""
    from covidviz.io.xray import Xray
    names = list(TRANSFORMS) if transforms is None else list(transforms)
    threshold = None if predictor.guard is None else predictor.guard.threshold
    rows: list[dict[str, Any]] = []
    for name in (CLEAN, *names):
        shifted = list(grays) if name == CLEAN else [TRANSFORMS[name](g, film_rng(seed, f, name), 1.0)
                                                      for g, f in zip(grays, files)]
        for file, label, p in zip(files, true, predictor.predict_xrays([Xray(g) for g in shifted], list(files))):
            distance = np.nan if p.ood_distance is None else round(p.ood_distance, 3)
            rows.append({"file": file, "true": label, "transform": name,
                         "label": predictor.decision.label(p.probabilities), "ood_distance": distance,
                         "flagged": bool(threshold is not None and p.ood_distance > threshold),
                         "lungs_plausible": p.lungs_plausible is not False})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def sample_validation(data_dir: str | Path, weights_dir: str | Path, films: int, seed: int
                      ) -> tuple[list[Any], dict[str, Any]]:
    """``films // 3`` validation films of each true class (the model's own split and labels), drawn at random
    without replacement, seeded; and how they were drawn."""
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.evaluation.explanation_check.explanations import stratified_sample
    val = records_for_splits(data_dir, Path(weights_dir))["val"]
    per_class = max(1, films // len(CLASSES))
    chosen = [val[i] for i in stratified_sample([r.target for r in val], per_class, seed)]
    return chosen, {"split": "val", "split_size": len(val), "films": len(chosen), "per_class": per_class,
                    "seed": seed, "transform_strength": 1.0,
                    "drawn": f"{per_class} validation films per true class at random without replacement, seed {seed}"}


def measure_per_film(data_dir: str | Path, weights_dir: str | Path, films: int = DEFAULT_FILMS,
                     seed: int = DEFAULT_SEED) -> tuple[Path, dict[str, Any]]:
    """Run the model over the sample, clean and under every transform; write the per-film file. Returns its path
    and how the sample was drawn (for the summary)."""
    import time

    from tqdm import tqdm

    from covidviz.io.loading import load_xray_file
    from covidviz.model.predictor import Predictor
    predictor = Predictor(weights_dir, engine="onnxruntime")
    records, sample = sample_validation(data_dir, weights_dir, films, seed)
    started = time.perf_counter()
    frames = []
    for start in tqdm(range(0, len(records), CHUNK), desc="films", unit="chunk"):
        chunk = records[start:start + CHUNK]
        grays = [load_xray_file(Path(data_dir) / r.file).pixels for r in chunk]
        frames.append(measure_films(predictor, grays, [r.file for r in chunk], [r.label for r in chunk], seed))
    sample["seconds"] = round(time.perf_counter() - started)
    sample["engine"] = "onnxruntime"
    per_film = pd.concat(frames)
    order = {n: i for i, n in enumerate((CLEAN, *TRANSFORMS))}
    per_film = per_film.sort_values("transform", key=lambda s: s.map(order), kind="stable")
    path = eval_dir(weights_dir) / PER_FILM_FILE
    per_film.to_csv(path, index=False)
    return path, sample
