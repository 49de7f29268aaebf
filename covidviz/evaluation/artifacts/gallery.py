"""The error gallery: misclassified internal-test images with their Grad-CAM overlays.

Committed to ``weights/eval/gallery/`` only for images whose licence allows it
(``demo_shippable=yes``); with a data folder at hand (``COVIDVIZ_DATA``) the page shows every error.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidviz import CLASSES
from covidviz.data.collection import read_metadata
from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
from covidviz.explain.cam.scaling import normalise_like_library
from covidviz.explain.overlay import blend, to_uint8
from covidviz.io.images import png_bytes
from covidviz.io.loading import load_xray_file
from covidviz.model.decision import ARGMAX_RULE, DecisionRule
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch

GALLERY_DIR = "gallery"
INDEX_FILE = "gallery.csv"


@dataclass(frozen=True)
class GalleryItem:
    file: str
    source: str
    true: str
    predicted: str
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]


def misclassified(predictions_csv: Path, rule: DecisionRule = ARGMAX_RULE) -> list[GalleryItem]:
    """Errors under ``rule`` (the model's decision rule; argmax unless given), most confident first."""
    items = []
    with Path(predictions_csv).open(newline="") as handle:
        for row in csv.DictReader(handle):
            probs = {c: float(row[f"p_{c}"]) for c in CLASSES}
            predicted = rule.label(probs)
            if predicted != row["true"]:
                items.append(GalleryItem(row["file"], row["source"], row["true"], predicted, probs))
    return sorted(items, key=lambda item: -item.confidence)


def overlay_pair(predictor: Predictor, path: Path, class_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The canonical image the model saw (uint8 gray) and its Grad-CAM overlay for ``class_name`` (uint8 RGB)."""
    canonical = predictor.prepare([load_xray_file(path).pixels])[0].image
    result = gradcam_all_classes(predictor.model, model_batch([canonical], predictor.input_size))
    cam = normalise_like_library(result.maps[0], canonical.shape[0])[CLASSES.index(class_name)]
    return to_uint8(canonical), blend(canonical, cam, "inferno", 0.45)


def build_gallery(data_dir: Path, weights_dir: Path, predictor: Predictor, split: str = "test") -> int:
    """Write overlays of the shippable errors and their index; return how many were written."""
    shippable = {r.file for r in read_metadata(data_dir) if r.shippable}
    out = Path(weights_dir) / "eval" / GALLERY_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    rows = []
    for item in misclassified(Path(weights_dir) / "eval" / f"{split}_predictions.csv", predictor.decision):
        if item.file not in shippable:
            continue
        image, overlay = overlay_pair(predictor, Path(data_dir) / item.file, item.predicted)
        stem = Path(item.file).stem
        (out / f"{stem}.png").write_bytes(png_bytes(image))
        (out / f"{stem}.overlay.png").write_bytes(png_bytes(overlay))
        rows.append({"file": item.file, "source": item.source, "true": item.true, "predicted": item.predicted,
                     **{f"p_{c}": f"{item.probabilities[c]:.6f}" for c in CLASSES},
                     "image": f"{stem}.png", "overlay": f"{stem}.overlay.png"})
    with (out / INDEX_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "source", "true", "predicted", *(f"p_{c}" for c in CLASSES),
                                         "image", "overlay"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def read_gallery_index(weights_dir: Path) -> list[dict[str, str]]:
    path = Path(weights_dir) / "eval" / GALLERY_DIR / INDEX_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
