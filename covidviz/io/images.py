"""Encoding images for download and display."""

from __future__ import annotations

import base64

import cv2
import numpy as np


def png_bytes(rgb_or_gray: np.ndarray) -> bytes:
    """uint8 RGB (H x W x 3) or gray (H x W) to PNG bytes."""
    return _encode(rgb_or_gray, ".png", [])


def jpeg_bytes(rgb_or_gray: np.ndarray, quality: int = 92) -> bytes:
    """uint8 RGB or gray to JPEG bytes: for colour overlays on screen, several times smaller than PNG (a
    blended heatmap is mostly noise to PNG's compressor). Never for the radiograph itself or a download."""
    return _encode(rgb_or_gray, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])


def _encode(rgb_or_gray: np.ndarray, suffix: str, params: list[int]) -> bytes:
    image = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"{suffix[1:].upper()} encoding failed")
    return encoded.tobytes()


def data_uri(rgb_or_gray: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb_or_gray)).decode("ascii")
