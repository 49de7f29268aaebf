"""Bringing raw class maps to image size, with the scaling made explicit.

pytorch-grad-cam min-max scales every map to [0, 1] on its own, so a map for a class with 1%
probability looks as hot as one for 99%. covidviz offers that view (to compare with the library) and
a shared scale, where all classes of one image are divided by the same maximum; the page always
prints each class's probability beside its map.
"""

from __future__ import annotations

import cv2
import numpy as np

from covidviz.model.preprocessing import CropBox


def normalise_like_library(raw: np.ndarray, size: int) -> np.ndarray:
    """Per-map min-max to [0, 1], bilinear resize to ``size``, min-max again: pytorch-grad-cam's
    ``scale_cam_image`` per layer and then over the layers, so the two agree to float precision."""
    out = []
    for cam in raw.reshape(-1, *raw.shape[-2:]):
        resized = cv2.resize(np.float32(_min_max(cam)), (size, size))
        out.append(_min_max(resized))
    return np.stack(out).reshape(*raw.shape[:-2], size, size)


def _min_max(cam: np.ndarray) -> np.ndarray:
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max())


def normalise_shared(raw: np.ndarray, size: int) -> np.ndarray:
    """All maps of one image divided by their common maximum (relative strength kept), then resized."""
    peak = float(raw.max())
    scaled = raw / peak if peak > 0 else np.zeros_like(raw)
    flat = [cv2.resize(np.float32(cam), (size, size)) for cam in scaled.reshape(-1, *raw.shape[-2:])]
    return np.stack(flat).reshape(*raw.shape[:-2], size, size)


def to_original(cam: np.ndarray, box: CropBox, shape: tuple[int, int]) -> np.ndarray:
    """Place a square map over the region of the original image the model saw; NaN where it saw nothing."""
    height, width = shape
    out = np.full((height, width), np.nan, dtype=np.float32)
    top, left = round(box.top), round(box.left)
    box_h, box_w = max(1, round(box.height)), max(1, round(box.width))
    resized = cv2.resize(np.float32(cam), (box_w, box_h), interpolation=cv2.INTER_LINEAR)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + box_h, height), min(left + box_w, width)
    out[r0:r1, c0:c1] = resized[r0 - top:r1 - top, c0 - left:c1 - left]
    return out
