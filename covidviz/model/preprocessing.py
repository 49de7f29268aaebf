"""The one preprocessing path shared by training, evaluation and inference.

Two steps, split so the expensive one can be cached:

1. :func:`prepare` (numpy, per image): grayscale in [0, 1] at any size becomes a 256x256 float32
   image of the **lung field**: the lung segmenter finds both lungs on the whole image, the box around
   them (with a margin) is cut from the original and resized to 256 x 256, and intensities are
   stretched between the 0.5th and 99.5th percentiles. Borders, burnt-in text, arrows and shoulders
   mostly fall outside. Where no plausible pair of lungs is found (or for a model trained without
   lung fields) the fallback is :func:`canonical_with_box`: uniform borders trimmed, the shorter
   side resized to 256 and the centre cropped.
2. :func:`model_batch` (numpy, per batch): resize to the model's input size and standardise
   each image to zero mean and unit variance (removes per-source brightness and contrast),
   replicated to three channels so torchvision DenseNet weights fit.

Training inserts augmentation between ``resize_batch`` and ``standardise``, on torch tensors: both take
numpy arrays and torch tensors alike, so training and serving run the same operator, and a server that
reads with ONNX Runtime never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

from covidviz.lungs.field import LungCheck, check_lungs, check_texture, field_box, flat_share
from covidviz.lungs.network import Batch, zscore

CANONICAL_SIZE = 256
_BORDER_STD = 0.01       # a row or column this flat is padding, not anatomy
_MAX_TRIM = 0.2          # never trim more than this fraction from one side
_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class CropBox:
    """The region of the original image (in its pixel coordinates) that the canonical image shows."""

    top: float
    left: float
    height: float
    width: float

    def covers(self, shape: tuple[int, int]) -> bool:
        """True when the region is (to a pixel) the whole image of ``shape``."""
        h, w = shape
        return self.top <= 0.5 and self.left <= 0.5 and self.height >= h - 1 and self.width >= w - 1


@dataclass(frozen=True)
class Prepared:
    """One image ready for the model: the 256x256 canonical image, where it lies in the original, and
    the lung mask in canonical coordinates (None when no segmenter ran)."""

    image: np.ndarray
    box: CropBox
    lungs: np.ndarray | None = None
    check: LungCheck | None = None
    cropped: bool = False  # True: the box around the lungs; False: the whole-image form

    @property
    def lungs_found(self) -> bool:
        """The segmenter found a pair of lungs (its mask outlines them, for cropping and measuring)."""
        return self.check is not None and self.check.paired

    @property
    def lungs_plausible(self) -> bool:
        """The pair was found, and found with the confidence real radiographs get: otherwise no class."""
        return self.check is not None and self.check.plausible

    @property
    def lung_field(self) -> bool:
        """The model read the lung field (not the whole-image form)."""
        return self.cropped


def _trim_margins(image: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns of near-constant padding at the top, bottom, left and right (at most 20% per side)."""
    h, w = image.shape
    row_flat = image.std(axis=1) < _BORDER_STD
    col_flat = image.std(axis=0) < _BORDER_STD
    return (_leading_true(row_flat, int(h * _MAX_TRIM)), _leading_true(row_flat[::-1], int(h * _MAX_TRIM)),
            _leading_true(col_flat, int(w * _MAX_TRIM)), _leading_true(col_flat[::-1], int(w * _MAX_TRIM)))


def trim_uniform_borders(image: np.ndarray) -> np.ndarray:
    """Drop near-constant rows and columns at the edges (at most 20% per side)."""
    top, bottom, left, right = _trim_margins(image)
    return image[top:image.shape[0] - bottom, left:image.shape[1] - right]


def _leading_true(flags: np.ndarray, limit: int) -> int:
    n = 0
    while n < limit and flags[n]:
        n += 1
    return n


def resize_short_side_center_crop(image: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
    """Resize so the shorter side is ``size`` (area averaging when shrinking), then centre-crop."""
    h, w = image.shape
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


def stretch_contrast(image: np.ndarray) -> np.ndarray:
    """Map the 0.5th..99.5th percentile range to [0, 1], clipping the rest (burnt-in text, markers)."""
    lo, hi = np.percentile(image, _PERCENTILES)
    if hi - lo < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def canonical_image(gray: np.ndarray) -> np.ndarray:
    """Grayscale float image in [0, 1] (any size >= 64 px) to the 256x256 canonical form."""
    return canonical_with_box(gray)[0]


def canonical_with_box(gray: np.ndarray) -> tuple[np.ndarray, CropBox]:
    """The canonical image and where it lies in ``gray``, so heatmaps can be drawn on the original."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    gray = gray.astype(np.float32, copy=False)
    top, bottom, left, right = _trim_margins(gray)
    trimmed = gray[top:gray.shape[0] - bottom, left:gray.shape[1] - right]
    image = resize_short_side_center_crop(trimmed, CANONICAL_SIZE)
    h, w = trimmed.shape
    side = min(h, w)  # the crop is the central side x side square of the trimmed image
    scale = CANONICAL_SIZE / side
    new_h, new_w = max(CANONICAL_SIZE, round(h * scale)), max(CANONICAL_SIZE, round(w * scale))
    box = CropBox(top=top + (new_h - CANONICAL_SIZE) // 2 / scale, left=left + (new_w - CANONICAL_SIZE) // 2 / scale,
                  height=float(side), width=float(side))
    return stretch_contrast(image).astype(np.float32), box


def mask_in_box(probability: np.ndarray, shape: tuple[int, int], box: CropBox) -> np.ndarray:
    """The whole-image lung probability map (any grid) resampled onto the canonical grid of ``box``:
    a boolean 256 x 256 lung mask aligned with the canonical image."""
    h, w = shape
    gy, gx = probability.shape[0] / h, probability.shape[1] / w
    sy, sx = box.height / CANONICAL_SIZE, box.width / CANONICAL_SIZE
    # canonical pixel centre (u + 0.5) -> original (left + (u + 0.5) * sx) -> grid (that * gx - 0.5)
    affine = np.array([[sx * gx, 0, (box.left + 0.5 * sx) * gx - 0.5],
                       [0, sy * gy, (box.top + 0.5 * sy) * gy - 0.5]], dtype=np.float64)
    warped = cv2.warpAffine(np.float32(probability), affine, (CANONICAL_SIZE, CANONICAL_SIZE),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    return warped > 0.5


def lung_field_image(gray: np.ndarray, probability: np.ndarray, crop: bool = True,
                     min_confidence: float | None = None, max_flat: float | None = None) -> Prepared:
    """The lung-field canonical image of ``gray`` given the segmenter's whole-image lung probabilities.

    Pure: the segmenter runs elsewhere (batched). Falls back to :func:`canonical_with_box` when the
    mask is not a plausible pair of lungs, so a non-chest image still gets a prediction to flag.
    ``crop=False`` keeps the whole-image form but still maps the lungs onto it (to measure where a
    whole-image model's heatmaps fall). ``min_confidence``: the segmenter's floor
    (:func:`~covidviz.lungs.field.check_lungs`); a pair below it is still cropped, so what the model reads does
    not depend on the floor, but the check says it is not plausible. ``max_flat``: the largest share of the
    cropped field's lungs that may be flat (:func:`~covidviz.lungs.field.check_texture`); measured on the field
    the model reads, so only where it reads one."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    gray = gray.astype(np.float32, copy=False)
    check = check_lungs(probability, min_confidence)
    cropped = crop and check.paired
    if not cropped:
        image, box = canonical_with_box(gray)
    else:
        top, left, height, width = field_box(probability > 0.5, gray.shape)
        crop = gray[top:top + height, left:left + width]
        interp = cv2.INTER_AREA if min(height, width) > CANONICAL_SIZE else cv2.INTER_CUBIC
        image = stretch_contrast(cv2.resize(crop, (CANONICAL_SIZE, CANONICAL_SIZE), interpolation=interp))
        box = CropBox(float(top), float(left), float(height), float(width))
    image = image.astype(np.float32)
    lungs = mask_in_box(probability, gray.shape, box)
    if cropped:
        check = check_texture(check, flat_share(image, lungs), max_flat)
    return Prepared(image, box, lungs, check, cropped)


class LungProbabilities(Protocol):
    min_confidence: float | None
    max_flat: float | None

    def probabilities(self, grays: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray: ...


def prepare(grays: Sequence[np.ndarray], segmenter: LungProbabilities | None, crop: bool = True) -> list[Prepared]:
    """Grayscale images in [0, 1] to what the model reads: lung fields with a segmenter, else the
    whole-image canonical form (models trained before the lung segmenter existed).

    ``crop=False`` keeps the whole-image form but still outlines the lungs on it, so a whole-image
    model's heatmaps can be measured against the same lungs as a lung-field model's."""
    if segmenter is None:
        return [Prepared(*canonical_with_box(g)) for g in grays]
    probabilities = segmenter.probabilities(list(grays))
    return [lung_field_image(g, p, crop, segmenter.min_confidence, segmenter.max_flat)
            for g, p in zip(grays, probabilities)]


@lru_cache(maxsize=16)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in weights of a bilinear resize along one axis, antialiased when shrinking: a triangle filter
    stretched by the scale, as PyTorch's ``interpolate(mode="bilinear", antialias=True)`` (and PIL) weigh it.
    The shipped models were trained through PyTorch's; this matrix gives its output within 2e-5 (1e-7 at
    the 2x shrink of 256 to 128), and ``tests/test_preprocessing.py`` holds the two equal."""
    scale = n_in / n_out
    support, stretch = (scale, 1 / scale) if scale > 1 else (1.0, 1.0)
    weights = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        taps = np.maximum(0.0, 1 - np.abs((np.arange(lo, hi) - centre + 0.5) * stretch))
        weights[i, lo:hi] = taps / taps.sum()
    weights.setflags(write=False)
    return weights.astype(np.float32)


def resize_batch(batch: Batch, size: int) -> Batch:
    """N x 1 x H x W canonical batch to N x 1 x size x size (antialiased when shrinking): numpy in, numpy
    out; a torch tensor in (training, on its device), a tensor out."""
    h, w = batch.shape[-2:]
    if (h, w) == (size, size):
        return batch
    rows, cols = resize_matrix(h, size), resize_matrix(w, size)
    if not isinstance(batch, np.ndarray):
        rows, cols = batch.new_tensor(rows), batch.new_tensor(cols)
    return rows @ batch @ cols.T


def standardise(batch: Batch) -> Batch:
    """Per-image zero mean, unit variance; N x 1 x H x W to N x 3 x H x W (channels-last for a tensor)."""
    batch = zscore(batch)
    if isinstance(batch, np.ndarray):
        return np.ascontiguousarray(np.broadcast_to(batch, (batch.shape[0], 3, *batch.shape[2:])))
    import torch
    return batch.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def model_batch(canonical: Sequence[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """Canonical images to the model's N x 3 x size x size float32 input (inference and evaluation)."""
    stacked = np.ascontiguousarray(np.stack(list(canonical)), dtype=np.float32)[:, None]
    return standardise(resize_batch(stacked, size))
