"""The recipe ablation: models from different training recipes read the same validation films, so that the next
person knows what helped (``weights/eval/ablation.json``, the model card's "Recipe ablation" table).

Validation only: test and external films are never read here, so nothing is chosen by them. For each model:
macro F1 under argmax; the COVID-19 ROC AUC within SIIM, a source holding COVID-19 and other films alike, so
that source cannot stand in for class; the median share of the predicted class's Grad-CAM energy inside the
lung mask, beside the share a map spread evenly over the lung field would put there; pneumonia recall for
adults and children apart (the pooled recall is mostly the children's); and how often its class
flips on the validation films ``measure-shift`` draws, read clean and through each acquisition transform (the
same films, transforms and seeds for every row, under argmax, so rows compare whatever rule each model ships
with). Every row is resampled with the same bootstrap draws, so each difference against the first row comes
with a paired interval.
``scripts/recipe_ablation.py`` runs the models and writes the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.artifacts.saved import eval_dir
from covidviz.evaluation.measures.age_groups import pneumonia_recall_by_age
from covidviz.evaluation.measures.metrics import macro_f1, roc_auc
from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.lungs.field import lung_energy, map_on_grid
from covidviz.model.forward_pass import ForwardPass
from covidviz.model.preprocessing import model_batch

if TYPE_CHECKING:
    import torch

ABLATION_FILE = "ablation.json"
BATCH = 32


@dataclass(frozen=True)
class ValidationReading:
    """One model's reading of the validation films: class probabilities (argmax rule, no temperature: the
    ranking and the argmax do not depend on it), the predicted class's lung energy per film (NaN without
    lungs) and the size of the map its Grad-CAM reads."""

    probs: np.ndarray
    lung_energy: np.ndarray
    feature_map: tuple[int, int]


POOLINGS = ("image", "lungs")


def lung_cells(lungs: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """N x h x w: 1 where a cell of the feature grid touches the lung mask (a dilation by up to one cell), else
    0; all ones for a film without lungs, which is then pooled whole."""
    n, height, width = lungs.shape
    h, w = grid
    touched = lungs.reshape(n, h, height // h, w, width // w).any(axis=(2, 4)).astype(np.float32)
    touched[touched.sum(axis=(1, 2)) == 0] = 1.0
    return touched


def _member_pass(model: Any, batch: torch.Tensor, lungs: np.ndarray, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """One model's class probabilities and raw Grad-CAM maps (N x K x h x w) for a batch of model inputs."""
    import torch
    with torch.inference_mode():
        features = model.features(batch)
        if pooling == "lungs":
            cells = torch.as_tensor(lung_cells(lungs, tuple(int(n) for n in features.shape[2:])))[:, None]
            logits = model.classifier((features.relu() * cells).sum((2, 3)) / cells.sum((2, 3)))
        else:
            logits = model.head(features)
    result = cam_pass(ForwardPass(logits=logits.numpy(), feature_map=features.numpy()),
                      model.classifier.weight.detach().numpy())
    probs = np.exp(result.logits - result.logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), result.maps


@dataclass(frozen=True)
class TestTimeView:
    """A test-time view of a square lung field: the square crop whose top-left corner lies at (``top``,
    ``left``) and whose side is ``side``, all as fractions of the field's side, mirrored left to right when
    ``mirror``. Training zooms by 0.85 to 1.2 and shifts by up to 6%, so crops of 0.9 stay inside what the
    model has seen; it never saw a mirrored film (the heart sits on the other side)."""

    top: float = 0.0
    left: float = 0.0
    side: float = 1.0
    mirror: bool = False

    def _box(self, height: int, width: int) -> tuple[int, int, int, int]:
        top, left = round(self.top * height), round(self.left * width)
        return top, left, max(1, round(self.side * height)), max(1, round(self.side * width))

    def apply(self, images: np.ndarray) -> np.ndarray:
        """N x H x W images (or masks) as this view sees them, before the model's resize."""
        top, left, h, w = self._box(*images.shape[1:3])
        crop = images[:, top:top + h, left:left + w]
        return crop[:, :, ::-1] if self.mirror else crop

    def back(self, cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A map drawn on this view, on the whole field's grid ``shape`` (zero outside the crop)."""
        top, left, h, w = self._box(*shape)
        placed = map_on_grid(cam[:, ::-1] if self.mirror else cam, (h, w))
        field = np.zeros(shape, np.float32)
        field[top:top + h, left:left + w] = placed
        return field


TEST_TIME_VIEWS = {
    "flip": (TestTimeView(), TestTimeView(mirror=True)),
    "crops": (TestTimeView(), TestTimeView(side=0.9), TestTimeView(left=0.1, side=0.9), TestTimeView(top=0.1, side=0.9),
              TestTimeView(top=0.1, left=0.1, side=0.9), TestTimeView(top=0.05, left=0.05, side=0.9)),
}


def read_validation(model: Any, images: np.ndarray, lungs: np.ndarray, found: np.ndarray, size: int,
                    pooling: str = "image", views: tuple[TestTimeView, ...] = (TestTimeView(),)) -> ValidationReading:
    """Run ``model`` (a :class:`covidviz.model.network.GapClassifier`, or a list of them read as an ensemble)
    over uint8 lung fields at ``size`` px, one PyTorch pass per model, view and batch giving logits and every
    class's Grad-CAM. An ensemble's probabilities are the mean over its members and ``views`` (test-time crops or
    mirrors), and its map of a class the mean of every pass's map, each carried back onto the field and scaled
    to unit energy first (passes draw on different scales; the page would draw the mean). ``pooling="lungs"``
    averages the feature map over the cells touching the lung mask instead of the whole map before the same
    linear head (the decision then depends on the lungs alone; the weights are unchanged, and so is each
    Grad-CAM map, whose channel weights only scale)."""
    import torch
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
    members = list(model) if isinstance(model, (list, tuple)) else [model]
    if not members or not views:
        raise ValueError("a reading needs at least one model and one view")
    if pooling == "lungs" and any(view.side != 1 for view in views):
        raise ValueError("lung pooling reads whole fields: crop views would cut its cells; use flip views or none")
    probs, shares, grid = [], [], (0, 0)
    for start in range(0, len(images), BATCH):
        chunk = slice(start, start + BATCH)
        inside = lungs[chunk] & found[chunk, None, None]
        passes = [(view, *_member_pass(member, torch.as_tensor(
                      model_batch(view.apply(images[chunk]).astype(np.float32) / 255, size)),
                      view.apply(inside), pooling))
                  for view in views for member in members]
        grids = {maps.shape[2:] for _, _, maps in passes}
        if len(grids) > 1:
            raise ValueError(f"an ensemble's members must draw maps on one grid: {sorted(grids)}")
        grid = tuple(int(n) for n in passes[0][2].shape[2:])
        mean = np.mean([p for _, p, _ in passes], axis=0)
        probs.append(mean)
        for i, (row, mask, ok) in enumerate(zip(mean, lungs[chunk], found[chunk])):
            if not ok:
                shares.append(float("nan"))
                continue
            label = int(np.argmax(row))
            fields = [view.back(maps[i, label], mask.shape) for view, _, maps in passes]
            unit = [field / total for field in fields if (total := field.sum(dtype=np.float64)) > 0]
            shares.append(lung_energy(np.mean(unit, axis=0), mask) if unit else float("nan"))
    return ValidationReading(np.concatenate(probs), np.array(shares, float), grid)


def _figures(reading: ValidationReading, truth: np.ndarray, siim: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Macro F1, within-SIIM COVID-19 AUC and median lung energy on the films ``idx`` (one resample)."""
    probs, covid = reading.probs[idx], CLASSES.index("covid")
    inside = siim[idx]
    return np.array([macro_f1(truth[idx], probs.argmax(1), len(CLASSES)),
                     roc_auc(truth[idx][inside] == covid, probs[inside, covid]),
                     float(np.nanmedian(reading.lung_energy[idx]))])


FIGURES = ("macro_f1", "siim_covid_auc", "lung_energy_median")


def _interval(samples: np.ndarray) -> list[float | None]:
    samples = samples[~np.isnan(samples)]
    return [float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))] if samples.size else [None, None]


def ablation_report(rows: list[tuple[dict[str, Any], ValidationReading]], truth: np.ndarray, siim: np.ndarray,
                    even_share: float, n_boot: int = 1000, seed: int = 0,
                    sources: np.ndarray | None = None) -> dict[str, Any]:
    """The artifact: per row its description (``name``, ``source``, ``architecture``, ``input_size``, and
    ``epoch`` or ``weights_sha256``), the map size, each figure with its 95% interval, and each figure's
    difference against the first row with the paired 95% interval (the same resamples for every row); with the
    films' ``sources``, each row's pneumonia recall per age group (films recalled, films, Wilson interval)."""
    if not rows:
        raise ValueError("the ablation needs at least one model")
    truth, siim = np.asarray(truth, int), np.asarray(siim, bool)
    draws = np.random.default_rng(seed).integers(0, len(truth), (n_boot, len(truth)))
    everything = np.arange(len(truth))
    point = [_figures(reading, truth, siim, everything) for _, reading in rows]
    resampled = [np.array([_figures(reading, truth, siim, idx) for idx in draws]) for _, reading in rows]
    out_rows = []
    for k, ((meta, reading), value, samples) in enumerate(zip(rows, point, resampled)):
        row = {**meta, "feature_map": list(reading.feature_map)}
        if sources is not None:
            row["pneumonia_recall"] = {group: recall.as_json() for group, recall in
                                       pneumonia_recall_by_age(sources, truth, reading.probs.argmax(1)).items()}
        for j, name in enumerate(FIGURES):
            row[name] = {"value": float(value[j]), "ci95": _interval(samples[:, j])}
            if k:
                row[name]["vs_first"] = {"value": float(value[j] - point[0][j]),
                                         "ci95": _interval(samples[:, j] - resampled[0][:, j])}
        out_rows.append(row)
    return {"split": "val", "films": int(len(truth)), "siim_films": int(siim.sum()),
            "films_with_lungs": int(np.sum(~np.isnan(rows[0][1].lung_energy))),
            "even_map_lung_share": float(even_share), "bootstrap_resamples": int(n_boot), "rule": "argmax",
            "rows": out_rows}


SHARED_FIELDS = ("split", "films", "siim_films", "films_with_lungs", "even_map_lung_share", "bootstrap_resamples",
                 "rule")


def extend_ablation(stored: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with the rows of ``fresh`` after its first, which replace stored rows of the same name: for
    adding models when earlier rows' checkpoints are gone. ``fresh`` must have read the same films with the same
    resamples, and its first row must be the stored first row, figures and intervals equal, so each added row's
    paired difference is the one a single run would have written. A measure the stored table predates (a field
    only the new reading has) is not compared; it appears on the rows read again."""
    for name in SHARED_FIELDS:
        if stored.get(name) != fresh.get(name):
            raise ValueError(f"the new reading differs from the stored ablation in {name!r}: "
                             f"{fresh.get(name)!r} against {stored.get(name)!r}; run every row again")
    first, again = stored["rows"][0], fresh["rows"][0]
    if {k: v for k, v in first.items() if k != "source"} != {k: v for k, v in again.items()
                                                             if k != "source" and k in first}:
        raise ValueError(f"the first model read now ({again['name']!r}) does not reproduce the stored first row "
                         f"({first['name']!r}); run every row again")
    added = {row["name"] for row in fresh["rows"][1:]}
    kept = [row for row in stored["rows"][1:] if row["name"] not in added]
    return {**stored, "rows": [{**again, "source": first["source"]}, *kept, *fresh["rows"][1:]]}


def flips_against_clean(labels: dict[str, np.ndarray], clean: str, seed: int) -> dict[str, Any]:
    """Per acquisition transform, how many films changed class against the same film read clean (``labels``:
    transform name to one class index per film, the clean reading under ``clean``); the ablation's argmax rule."""
    reference = np.asarray(labels[clean])
    return {"films": int(len(reference)), "seed": seed, "rule": "argmax",
            "flipped": {name: int(np.sum(np.asarray(found) != reference))
                        for name, found in labels.items() if name != clean}}


def ablation_path(weights_dir: str | Path) -> Path:
    return eval_dir(weights_dir) / ABLATION_FILE


def write_ablation(weights_dir: str | Path, report: dict[str, Any]) -> Path:
    path = ablation_path(weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def load_ablation(weights_dir: str | Path) -> dict[str, Any] | None:
    """``weights/eval/ablation.json``, or None before the ablation has been run."""
    path = ablation_path(weights_dir)
    return json.loads(path.read_text()) if path.is_file() else None
