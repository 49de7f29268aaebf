"""The one preprocessing path shared by training, evaluation and inference.

Two steps, split so the expensive one can be cached:

1. :func:`canonical_image` (numpy, per image): grayscale in [0, 1] at any size becomes a
   256x256 float32 image: uniform borders trimmed (frames and padding from figures are a
   source cue, not anatomy), the shorter side resized to 256 and the centre cropped (as the
   training PNGs were made), intensities stretched between the 0.5th and 99.5th percentiles.
2. :func:`model_batch` (torch, per batch): resize to the model's input size and standardise
   each image to zero mean and unit variance (removes per-source brightness and contrast),
   replicated to three channels so torchvision DenseNet weights fit.

Training inserts augmentation between ``resize_batch`` and ``standardise``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

CANONICAL_SIZE = 256
_BORDER_STD = 0.01       # a row or column this flat is padding, not anatomy
_MAX_TRIM = 0.2          # never trim more than this fraction from one side
_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class CropBox:
    """The square region of the original image (in its pixel coordinates) that the canonical image shows."""

    top: float
    left: float
    size: float


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
                  size=float(side))
    return stretch_contrast(image).astype(np.float32), box


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """N x 1 x 256 x 256 canonical batch to N x 1 x size x size (antialiased when shrinking)."""
    if batch.shape[-1] == size:
        return batch
    return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def standardise(batch: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit variance; N x 1 x H x W to N x 3 x H x W."""
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    std = batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return ((batch - mean) / std).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def model_batch(canonical: Sequence[np.ndarray] | np.ndarray, size: int) -> torch.Tensor:
    """Canonical images to the model's input tensor (inference and evaluation)."""
    stacked = torch.from_numpy(np.ascontiguousarray(np.stack(list(canonical)), dtype=np.float32))
    return standardise(resize_batch(stacked.unsqueeze(1), size))
