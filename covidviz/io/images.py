"""Encoding images for download and display."""

from __future__ import annotations

import base64

import cv2
import numpy as np


def png_bytes(rgb_or_gray: np.ndarray) -> bytes:
    """uint8 RGB (H x W x 3) or gray (H x W) to PNG bytes."""
    image = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def data_uri(rgb_or_gray: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb_or_gray)).decode("ascii")
