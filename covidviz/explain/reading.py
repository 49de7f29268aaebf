"""One X-ray read by the model as the Diagnose page shows it: probabilities, OOD check and heatmaps.

The default view costs one forward pass: the calibrated probabilities, the out-of-distribution
score and the Grad-CAM maps of all three classes come from the same pass (see
:mod:`covidviz.explain.cam.fast_gradcam`). Other CAM methods run pytorch-grad-cam on a private model copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.explain.cam.library import Progress, library_cam
from covidviz.explain.cam.methods import FAST_METHOD, SCALES
from covidviz.explain.cam.scaling import normalise_like_library, normalise_shared, to_original
from covidviz.explain.overlay import downscale
from covidviz.io.xray import Xray
from covidviz.lungs.field import LungCheck, lung_energy
from covidviz.model.inference import softmax
from covidviz.model.ood import OodGuard, colour_message, lung_message, ood_message
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import CropBox, Prepared, model_batch

LibraryDraw = Callable[[str, np.ndarray, int, Progress | None], np.ndarray]  # (method, batch, class, progress) -> map


@dataclass(frozen=True)
class Reading:
    name: str
    xray: Xray
    prepared: Prepared  # what the model read, where it lies in the upload, and the lungs on it
    probabilities: np.ndarray  # calibrated, in CLASSES order
    raw_maps: np.ndarray  # K x h x w fast Grad-CAM, unnormalised
    ood_distance: float | None
    guard: OodGuard | None

    @property
    def canonical(self) -> np.ndarray:
        return self.prepared.image

    @property
    def box(self) -> CropBox:
        return self.prepared.box

    @property
    def lung_check(self) -> LungCheck | None:
        return self.prepared.check

    @property
    def is_outlier(self) -> bool:
        """Unlike any chest X-ray the model knows, a colour picture, or no plausible lungs: the prediction is not
        meaningful."""
        no_lungs = self.lung_check is not None and not self.lung_check.plausible
        return no_lungs or self.xray.colourful or (self.guard is not None and self.ood_distance > self.guard.threshold)

    @property
    def is_unusual(self) -> bool:
        """A chest X-ray, perhaps, but unlike the training images (other hospital, detector, projection)."""
        return self.guard is not None and not self.is_outlier and self.ood_distance > self.guard.caution

    def verdict(self, predictor: Predictor) -> tuple[str | None, str | None]:
        """(class, None) by the model's decision rule, or (None, reason): :meth:`Predictor.verdict` on this
        reading's probabilities, OOD distance, lung check and colour."""
        return predictor.verdict(self.probabilities, self.ood_distance, self.lung_check, self.xray.colourful)

    @property
    def ood_note(self) -> str | None:
        notes = [n for n in (colour_message(self.xray.colourful), lung_message(self.lung_check),
                             ood_message(self.ood_distance, self.guard)) if n]
        return " ".join(notes) or None

    @property
    def read_lung_field(self) -> bool:
        """The model read the box around both lungs (not the whole-image fallback)."""
        return self.prepared.lung_field

    def lung_share(self, cam: np.ndarray) -> float | None:
        """Share of a heatmap's energy inside the lungs (None without a lung mask; NaN for an empty map)."""
        return None if self.prepared.lungs is None else lung_energy(cam, self.prepared.lungs)

    def probability(self, class_index: int) -> float:
        return float(self.probabilities[class_index])


def read_xray(predictor: Predictor, xray: Xray, name: str, guard: OodGuard | None) -> Reading:
    """Preprocess once (lung segmenter included), run the model once."""
    prepared = predictor.prepare([xray.pixels])[0]
    result = cam_pass(predictor.forward_for_maps([prepared.image]), predictor.classifier_weight)
    distance = float(guard.distance(result.pooled)[0]) if guard is not None else None
    return Reading(name=name, xray=xray, prepared=prepared,
                   probabilities=softmax(result.logits, predictor.temperature)[0], raw_maps=result.maps[0],
                   ood_distance=distance, guard=guard)


def heatmap(reading: Reading, predictor: Predictor, method: str, class_index: int, scale: str = SCALES[0],
            progress: Progress | None = None, draw: LibraryDraw | None = None) -> np.ndarray:
    """The map for one class at the model's input size, in [0, 1].

    ``scale`` applies to the fast Grad-CAM only: the library methods always min-max scale per map. ``draw``
    draws a library method's map (default: in this process, on the predictor's PyTorch network; the dashboard
    passes :meth:`covidviz.explain.cam.remote.CamWorker.cam`, so its server never loads torch).
    """
    size = predictor.input_size
    if method == FAST_METHOD:
        maps = normalise_shared(reading.raw_maps, size) if scale == SCALES[1] else normalise_like_library(
            reading.raw_maps, size)
        return maps[class_index]
    batch = model_batch([reading.canonical], size)
    if draw is not None:
        return draw(method, batch, class_index, progress)
    return library_cam(predictor.model, method, batch, class_index, progress)


def heatmap_on_original(reading: Reading, cam: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The map placed over the uploaded image's pixels (NaN outside the region the model saw); with ``shape``,
    over the upload shown at that size (a downscaled copy of it), drawn there directly: a full-resolution map
    of a large DICOM, then shrunk, cost the page tens of milliseconds on every redraw."""
    shape = shape or reading.xray.pixels.shape
    return to_original(cam, _box_at(reading, shape), shape)


def lungs_on_display(reading: Reading, shape: tuple[int, int]) -> np.ndarray | None:
    """The lung mask over the upload shown at ``shape`` (a downscaled copy of it), False outside the region
    the model read. Drawn at display size: a full-resolution mask of a large DICOM would cost tens of MB
    on every redraw."""
    if reading.prepared.lungs is None:
        return None
    return to_original(reading.prepared.lungs.astype(np.float32), _box_at(reading, shape), shape) > 0.5


def _box_at(reading: Reading, shape: tuple[int, int]) -> CropBox:
    """Where the model's box lies on the upload shown at ``shape``."""
    sy, sx = shape[0] / reading.xray.pixels.shape[0], shape[1] / reading.xray.pixels.shape[1]
    box = reading.box
    return CropBox(box.top * sy, box.left * sx, box.height * sy, box.width * sx)


KEPT_MAX_SIDE = 2048  # the most any view of a reading needs: display 800 px, case report 768, DICOM SC 2048


def compact(reading: Reading, max_side: int = KEPT_MAX_SIDE) -> Reading:
    """The reading as a session keeps it: the upload reduced to at most ``max_side`` px (area averaging) and
    the model's box scaled to match. What the model read (the canonical image, the lung mask), the
    probabilities and the maps are unchanged, so every later view of it is the same, for a fraction of the
    memory: a 50-megapixel upload kept whole is 200 MB of float32, reduced 16 MB."""
    h, w = reading.xray.pixels.shape
    if max(h, w) <= max_side:
        return reading
    small = downscale(reading.xray.pixels, max_side)
    sy, sx = small.shape[0] / h, small.shape[1] / w
    box = reading.box
    prepared = replace(reading.prepared, box=CropBox(box.top * sy, box.left * sx, box.height * sy, box.width * sx))
    return replace(reading, xray=replace(reading.xray, pixels=small), prepared=prepared)


def reading_bytes(reading: Reading) -> int:
    """Memory a kept reading holds in arrays."""
    arrays = (reading.xray.pixels, reading.canonical, reading.raw_maps, reading.prepared.lungs)
    return sum(a.nbytes for a in arrays if a is not None)
