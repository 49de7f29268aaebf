"""Evaluation artifacts for a model trained beside the shipped one (a comparison backbone or a
cross-validation fold), in the format of ``weights/eval/``: ``{split}_predictions.csv`` and ``metrics.json``
with the same ``splits`` block (overall and per source, 95% bootstrap intervals).

It reads already prepared images (the runs share one cache), so it costs one forward pass per image. The
temperature is fitted on validation only, as ``evaluate`` does; the out-of-distribution guard, lung-energy and
gallery sections belong to the shipped model's fuller evaluation and are not repeated here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from covidviz.data.collection import Record
from covidviz.evaluation.artifacts.evaluate import write_metrics, write_predictions
from covidviz.evaluation.artifacts.saved import SPLIT_TITLES
from covidviz.evaluation.measures.calibration import fit_temperature
from covidviz.evaluation.measures.report import metrics_report
from covidviz.model.inference import pooled_and_logits, softmax
from covidviz.model.network import GapClassifier
from covidviz.model.sidecar import update_sidecar
from covidviz.verified import read_sidecar


class _AsUnit:
    """uint8 prepared images read as floats in [0, 1], a batch at a time (a whole set in float32 is 4x larger)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> np.ndarray:
        return self.images[index].astype(np.float32) / 255


SOURCE_RESAMPLES = 200  # per-source intervals: informative, and five times cheaper than the overall ones


def split_report(records: list[Record], probs: np.ndarray, name: str, n_boot: int) -> dict[str, Any]:
    """One split's block of ``metrics.json``: overall (``n_boot`` resamples) and per source (at most
    :data:`SOURCE_RESAMPLES`: ten runs times a dozen sources would otherwise spend more time resampling than
    predicting)."""
    y = np.array([r.target for r in records])
    sources = np.array([r.source for r in records])
    per_source = min(n_boot, SOURCE_RESAMPLES)
    return {"title": SPLIT_TITLES[name], "overall": metrics_report(y, probs, n_boot),
            "by_source": {s: metrics_report(y[sources == s], probs[sources == s], per_source)
                          for s in sorted(set(sources))}}


def evaluate_run(model: GapClassifier, weights_dir: str | Path, sets: dict[str, tuple[list[Record], np.ndarray]],
                 n_boot: int = 1000) -> dict[str, Any]:
    """Write ``<weights_dir>/eval/`` for ``sets`` (split name to records and their uint8 prepared images;
    "val" fits the temperature) and store the temperature in the sidecar; return the metrics."""
    weights_dir = Path(weights_dir)
    sidecar = read_sidecar(weights_dir)
    size = int(sidecar["input_size"])
    logits = {name: pooled_and_logits(model, _AsUnit(images), size, batch_size=64)[1]
              for name, (_, images) in sets.items()}
    temperature = fit_temperature(logits["val"], np.array([r.target for r in sets["val"][0]])) if "val" in sets else 1.0
    update_sidecar(weights_dir, temperature=temperature)
    out = weights_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"weights_sha256": sidecar["weights_sha256"], "architecture": sidecar["architecture"],
                              "recipe": sidecar.get("recipe"), "temperature": temperature,
                              "temperature_fitted_on": "val", "bootstrap_resamples": n_boot,
                              "bootstrap_resamples_by_source": min(n_boot, SOURCE_RESAMPLES), "splits": {}}
    for name, (records, _) in sets.items():
        probs = softmax(logits[name], temperature)
        write_predictions(out / f"{name}_predictions.csv", records, probs)
        report["splits"][name] = split_report(records, probs, name, n_boot)
    write_metrics(out, report)
    return report
