"""Read the evaluation artifacts that ``python -m covidviz evaluate`` writes to ``weights/eval/``.

The dashboard's evaluation pages only ever read these files: they never run the model to show a
number, so every figure matches the model card and renders in about a second. Missing or malformed
artifacts raise :class:`EvalArtifactsError` with a message a reader can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidviz import CLASSES
from covidviz.paths import COMPARISON_DIR

SPLITS: tuple[str, ...] = ("val", "test", "external")
SPLIT_TITLES: dict[str, str] = {"val": "validation", "test": "internal test",
                                 "external": "external (Hannover COVID-19, Shenzhen normals)"}
PREDICTION_COLUMNS: tuple[str, ...] = ("file", "source", "true", *(f"p_{c}" for c in CLASSES))
HOW_TO_MAKE = "run `python -m covidviz evaluate --data ../shared/cxr` to write them"


class EvalArtifactsError(FileNotFoundError):
    """The evaluation artifacts are missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class SplitPredictions:
    """Calibrated predictions of one split: integer labels, an N x 3 probability matrix, sources."""

    split: str
    files: np.ndarray
    sources: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray

    @property
    def n(self) -> int:
        return int(len(self.y_true))

    def subset(self, source: str | None) -> SplitPredictions:
        """Only the images of one source (``None``: all of them)."""
        if source is None:
            return self
        keep = self.sources == source
        return SplitPredictions(self.split, self.files[keep], self.sources[keep], self.y_true[keep], self.probs[keep])


def eval_dir(weights_dir: str | Path) -> Path:
    return Path(weights_dir) / "eval"


def load_predictions(weights_dir: str | Path, split: str) -> SplitPredictions:
    """``weights/eval/{split}_predictions.csv`` as arrays, checked against the fixed column layout."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
    path = eval_dir(weights_dir) / f"{split}_predictions.csv"
    if not path.is_file():
        raise EvalArtifactsError(f"No predictions for the {SPLIT_TITLES[split]} split at {path}: {HOW_TO_MAKE}.")
    try:
        frame = pd.read_csv(path, dtype={"file": str, "source": str, "true": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EvalArtifactsError(f"{path} cannot be read as CSV ({exc}): {HOW_TO_MAKE} again.") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise EvalArtifactsError(f"{path} lacks the columns {', '.join(missing)}: {HOW_TO_MAKE} again.")
    unknown = sorted(set(frame["true"]) - set(CLASSES))
    if unknown:
        raise EvalArtifactsError(f"{path} has labels {unknown} outside {list(CLASSES)}.")
    probs = frame[[f"p_{c}" for c in CLASSES]].to_numpy(dtype=float)
    if not np.isfinite(probs).all():
        raise EvalArtifactsError(f"{path} has missing or non-numeric probabilities: {HOW_TO_MAKE} again.")
    y_true = frame["true"].map({c: k for k, c in enumerate(CLASSES)}).to_numpy(dtype=int)
    return SplitPredictions(split, frame["file"].to_numpy(dtype=object), frame["source"].to_numpy(dtype=object),
                            y_true, probs)


def load_metrics(weights_dir: str | Path) -> dict[str, Any]:
    """``weights/eval/metrics.json`` (reports per split and source, calibration), checked for its splits."""
    path = eval_dir(weights_dir) / "metrics.json"
    return read_artifact_json(path, "splits", "per-split", EvalArtifactsError,
                              f"No evaluation results at {path}: {HOW_TO_MAKE}.", HOW_TO_MAKE)


def read_artifact_json(path: Path, section: str, described: str, error: type[Exception], missing: str,
                       how_to_make: str) -> dict[str, Any]:
    """A JSON artifact, checked to be an object with a non-empty ``section``; ``error`` says what is wrong and
    how to make the file again (``missing`` when there is no file at all)."""
    if not path.is_file():
        raise error(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}): {how_to_make} again.") from None
    if not isinstance(data, dict) or not isinstance(data.get(section), dict) or not data[section]:
        raise error(f"{path} holds no {described} results: {how_to_make} again.")
    return data


def available_splits(metrics: dict[str, Any]) -> list[str]:
    """The splits present in ``metrics.json``; the internal test first (the default view), then the external
    set, then validation (which chose the checkpoint and the temperature, so flatters the model)."""
    order = ("test", "external", "val")
    return [s for s in order if s in metrics["splits"]] + sorted(set(metrics["splits"]) - set(order))


def split_title(metrics: dict[str, Any], split: str) -> str:
    return metrics["splits"].get(split, {}).get("title") or SPLIT_TITLES.get(split, split)


def split_label(metrics: dict[str, Any], split: str) -> str:
    """The title for a menu: "External (Hannover)" (``str.capitalize`` would lower-case the rest)."""
    title = split_title(metrics, split)
    return title[:1].upper() + title[1:]


def split_report(metrics: dict[str, Any], split: str, source: str | None = None) -> dict[str, Any]:
    """The ``metrics_report`` of a split, or of one of its sources."""
    entry = metrics["splits"][split]
    return entry["overall"] if source is None else entry["by_source"][source]


def sources_of(metrics: dict[str, Any], split: str) -> list[str]:
    return sorted(metrics["splits"][split].get("by_source", {}))


def stale_warning(built_for: str | None, in_use: str | None, remedy: str = HOW_TO_MAKE) -> str | None:
    """The warning every artifact page shows when an artifact (metrics, explanation check, comparison) was made
    for other weights than the model in use; None when they match or either is unknown."""
    if not built_for or not in_use or built_for == in_use:
        return None
    return (f"These results were computed for model {built_for[:12]}, but the model in use is {in_use[:12]}: "
            f"{remedy} again.")


def class_presence(y_true: np.ndarray, k: int) -> tuple[int, int]:
    """How many images of the split are class ``k`` (positives) and how many are not (negatives)."""
    positives = int(np.sum(np.asarray(y_true) == k))
    return positives, int(len(y_true)) - positives


def metric_value(report: dict[str, Any], cls: str | None, name: str) -> tuple[float, float, float]:
    """(value, CI low, CI high) of one metric of a report, NaN where metrics.json says null."""
    entry = (report["summary"] if cls is None else report["per_class"][cls]).get(name) or {}
    lo, hi = (entry.get("ci95") or [None, None])[:2]
    value = entry.get("value")
    return tuple(float("nan") if v is None else float(v) for v in (value, lo, hi))  # type: ignore[return-value]


COMPARISON_HOW_TO_MAKE = ("run `python -m covidviz compare-train --arch densenet121 small_cnn resnet50 densenet201 "
                          "vgg19_bn`, `python -m covidviz compare-train --fold 0 1 2 3 4`, then "
                          "`python -m covidviz compare-build`")


COMPARISON_REBUILD = "run `python -m covidviz compare-build`"


def comparison_built_for(report: dict[str, Any]) -> str | None:
    """The sha256 of the shipped model a comparison was built against."""
    return next((m.get("weights_sha256") for m in report["models"] if m.get("id") == "shipped"), None)


def load_comparison(weights_dir: str | Path) -> dict[str, Any]:
    """``weights/comparison/comparison.json`` (what ``compare-build`` writes), checked for its model list."""
    path = Path(weights_dir) / COMPARISON_DIR / "comparison.json"
    if not path.is_file():
        raise EvalArtifactsError(f"No model comparison at {path}: {COMPARISON_HOW_TO_MAKE}.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalArtifactsError(f"{path} is not valid JSON ({exc}): {COMPARISON_HOW_TO_MAKE} again.") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) and "splits" in m for m in models):
        raise EvalArtifactsError(f"{path} holds no compared models: {COMPARISON_HOW_TO_MAKE} again.")
    return data
