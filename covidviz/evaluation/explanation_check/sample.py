"""What the explanation check runs on and where: the images (a seeded, class-stratified sample of the internal
test split, or the repository's examples without one) and the machine its seconds per map were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from covidviz import CLASSES
from covidviz.evaluation.explanation_check.explanations import stratified_sample
from covidviz.model.cpu import cpu_model


def sample_files(weights_dir: Path, data_dir: Path, per_class: int, seed: int
                 ) -> tuple[list[Path], list[int], dict[str, Any]]:
    """The images to check: a seeded sample of the internal test split (``weights/eval/test_predictions.csv``,
    the labels the model was evaluated with), stratified by true class; the repository's examples/xrays
    when the collection or the evaluation is not here. Returns paths, true classes and how they were drawn."""
    from covidviz.evaluation.artifacts.saved import EvalArtifactsError, load_predictions
    try:
        predictions = load_predictions(weights_dir, "test") if (data_dir / "metadata.csv").is_file() else None
    except EvalArtifactsError:
        predictions = None
    if predictions is not None:
        rows = stratified_sample(predictions.y_true, per_class, seed)
        files = [str(predictions.files[i]) for i in rows]
        labels = [int(predictions.y_true[i]) for i in rows]
        source = (f"internal test split ({predictions.n} images in {weights_dir.name}/eval/test_predictions.csv), "
                  f"{per_class} per true class drawn at random without replacement, seed {seed}")
        return [data_dir / f for f in files], labels, {"source": source, "split": "test", "split_size": predictions.n,
                                                        "files": files}
    import csv

    from covidviz.paths import EXAMPLES_DIR
    with (EXAMPLES_DIR / "manifest.csv").open(newline="") as handle:
        manifest = list(csv.DictReader(handle))
    rows = stratified_sample([CLASSES.index(r["class"]) for r in manifest], per_class, seed)
    files = [manifest[i]["fixture"] for i in rows]
    source = (f"the repository's examples/xrays ({len(manifest)} images; no evaluated internal test split beside "
              f"these weights and data), {per_class} per class at most, seed {seed}")
    return ([EXAMPLES_DIR / f for f in files], [CLASSES.index(manifest[i]["class"]) for i in rows],
            {"source": source, "split": "examples", "split_size": len(manifest), "files": files})


def machine() -> dict[str, Any]:
    """Where the seconds per map were measured."""
    return {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0], "python": platform.python_version()}
