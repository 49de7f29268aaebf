"""Heatmap overlays as RGB arrays: colour blend or contour outline, never touching the original pixels."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

COLORMAPS = {
    "Inferno": "inferno",
    "Viridis (colour-blind safe)": "viridis",
    "Cividis (colour-blind safe)": "cividis",
    "Jet (classic Grad-CAM)": "jet",
}
DISPLAY_MAX_SIDE = 800  # zoomable detail for a ~330 px column; a 2000 px DICOM would only slow the page down


@lru_cache(maxsize=16)
def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps  # imported on first overlay, not at page load

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def colour_strip(colormap: str, width: int = 256, height: int = 14) -> np.ndarray:
    """The colormap as a uint8 RGB strip, lowest value on the left: the key to reading an overlay's colours."""
    return np.repeat(_lut(colormap)[np.linspace(0, 255, width).astype(np.uint8)][None], height, axis=0)


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """[0, 1] grayscale to uint8 grayscale."""
    return (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """[0, 1] grayscale to uint8 RGB."""
    return np.repeat(to_uint8(gray)[..., None], 3, axis=2)


def display_scale(shape: tuple[int, int], max_side: int = DISPLAY_MAX_SIDE) -> float:
    return min(1.0, max_side / max(shape))


def downscale(image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Shrink for display (area averaging); NaN regions of a map stay NaN."""
    scale = display_scale(image.shape[:2], max_side)
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    if image.dtype.kind == "f" and np.isnan(image).any():
        seen = cv2.resize((~np.isnan(image)).astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
        values = cv2.resize(np.nan_to_num(image), size, interpolation=cv2.INTER_AREA)
        return np.where(seen, values, np.nan).astype(np.float32)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def blend(gray: np.ndarray, cam: np.ndarray, colormap: str = "inferno", opacity: float = 0.45) -> np.ndarray:
    """Colour the map over the radiograph; where the map is NaN (outside what the model saw) the image stays gray."""
    base = gray_to_rgb(gray).astype(np.float32)
    seen = ~np.isnan(cam)
    index = (np.clip(np.nan_to_num(cam), 0, 1) * 255).astype(np.uint8)
    colour = _lut(colormap)[index].astype(np.float32)
    out = np.where(seen[..., None], (1 - opacity) * base + opacity * colour, base)
    return out.astype(np.uint8)


def contour(gray: np.ndarray, cam: np.ndarray, threshold: float = 0.5, colormap: str = "inferno") -> np.ndarray:
    """Outline the region where the map is at least ``threshold``, on the unaltered radiograph."""
    out = np.ascontiguousarray(gray_to_rgb(gray))
    mask = (np.nan_to_num(cam, nan=0.0) >= threshold).astype(np.uint8)
    found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    colour = tuple(int(v) for v in _lut(colormap)[int(min(max(threshold, 0.6), 1.0) * 255)])
    thickness = max(1, round(max(gray.shape) / 250))
    cv2.drawContours(out, found, -1, colour, thickness, lineType=cv2.LINE_AA)
    return out


def render(gray: np.ndarray, cam: np.ndarray, style: str, colormap: str, opacity: float, threshold: float) -> np.ndarray:
    """One overlay as the page shows it: ``style`` is "heatmap" or "contour"."""
    if style == "contour":
        return contour(gray, cam, threshold, colormap)
    shown = np.where(cam >= threshold, cam, np.nan) if threshold > 0 else cam  # below threshold: no colour
    return blend(gray, shown.astype(np.float32), colormap, opacity)


LUNG_COLOUR = (64, 200, 255)   # light blue: the segmenter's lungs
FIELD_COLOUR = (255, 255, 255)  # white: the region the model read


def outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], dashed: bool = False) -> np.ndarray:
    """Draw the boundary of a boolean ``mask`` (same height and width as ``rgb``) on a copy of ``rgb``.

    Dashed lines tell the read region apart from the lung outline without another colour."""
    out = np.ascontiguousarray(rgb.copy())
    found, _ = cv2.findContours(np.asarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(rgb.shape[:2]) / 300))
    if not dashed:
        cv2.drawContours(out, found, -1, colour, thickness, lineType=cv2.LINE_AA)
        return out
    dash = 6 * thickness
    for contour_points in found:
        points = contour_points[:, 0, :]
        for start in range(0, len(points), 2 * dash):
            segment = points[start:start + dash]
            if len(segment) > 1:
                cv2.polylines(out, [segment.reshape(-1, 1, 2)], False, colour, thickness, lineType=cv2.LINE_AA)
    return out
