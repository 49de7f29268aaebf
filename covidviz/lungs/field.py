"""Pure geometry on lung masks: is there a plausible pair of lungs, where is the lung field, and how
much of a heatmap's energy falls inside it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

MIN_LUNG_SHARE = 0.02    # each lung covers at least this share of the image
MIN_TOTAL_SHARE = 0.08   # both lungs together (the smallest hand-drawn mask here covers 9%)
MAX_TOTAL_SHARE = 0.80
FIELD_MARGIN = 0.08      # the field extends the lungs' box by this share of its size on each side
LOW_LUNG_SHARE = 0.5     # a heatmap with less of its energy inside the lungs looked mostly outside them
FLAT_WINDOW = 5          # pixels of the 256 x 256 field: the neighbourhood whose spread is measured
FLAT_SPREAD = 1 / 256    # a neighbourhood whose standard deviation is below one 8-bit grey level is flat


@dataclass(frozen=True)
class LungCheck:
    """What a mask says: a plausible pair of lungs or not, and why not in words a reader can act on."""

    plausible: bool
    lung_share: float
    reason: str = ""
    confidence: float = 1.0  # the segmenter's mean probability inside the lungs it marked
    paired: bool = False  # a pair of lungs to crop and measure by, however sure the segmenter was of it
    flat: float = float("nan")  # share of those lungs that is flat in the field the model reads (NaN: not measured)


def _components(mask: np.ndarray) -> list[tuple[int, float]]:
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    parts = [(int(stats[i, cv2.CC_STAT_AREA]), float(centroids[i, 0])) for i in range(1, count)]
    return sorted(parts, reverse=True)


def check_lungs(probability: np.ndarray, min_confidence: float | None = None) -> LungCheck:
    """Two lungs of plausible size, one on each side of the image's vertical midline, which the segmenter
    marked with at least ``min_confidence`` mean probability (a binary mask counts as fully confident).

    The confidence test catches what geometry cannot: a grayscale photograph in which the segmenter draws two
    blobs side by side, but hesitantly (README, OOD guard). ``None``: geometry only."""
    probability = np.asarray(probability, dtype=np.float32)
    binary = probability > 0.5
    area = binary.size
    share = float(binary.mean())
    parts = _components(binary)
    if share < MIN_TOTAL_SHARE:
        return LungCheck(False, share, f"the lung segmenter found lungs covering only {share:.0%} of the image")
    if share > MAX_TOTAL_SHARE:
        return LungCheck(False, share, f"the lung segmenter marked {share:.0%} of the image as lung")
    big = [p for p in parts if p[0] >= MIN_LUNG_SHARE * area]
    mid = binary.shape[1] / 2
    if len(big) < 2 or not (min(p[1] for p in big[:2]) < mid < max(p[1] for p in big[:2])):
        return LungCheck(False, share, "the lung segmenter did not find two lungs side by side")
    confidence = float(probability[binary].mean())
    if min_confidence is not None and confidence < min_confidence:
        return LungCheck(False, share, f"the lung segmenter was unsure of the lungs it marked (mean probability "
                         f"{confidence:.3f} inside them; every validation radiograph reached {min_confidence:.3f})",
                         confidence, paired=True)
    return LungCheck(True, share, confidence=confidence, paired=True)


def flat_share(field: np.ndarray, mask: np.ndarray) -> float:
    """Share of the lungs in which the field the model reads is flat: each pixel's 5 x 5 neighbourhood varies by
    less than one grey level of 256. A radiograph's lungs carry vessels, ribs and detector noise everywhere; a
    rendered page or chart (the segmenter can draw a confident pair of lungs in the black around a white bell
    curve) is flat where it is blank. NaN without lungs."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    field = np.asarray(field, dtype=np.float32)
    size = (FLAT_WINDOW, FLAT_WINDOW)
    mean = cv2.blur(field, size, borderType=cv2.BORDER_REFLECT)
    variance = cv2.blur(field * field, size, borderType=cv2.BORDER_REFLECT) - mean * mean
    return float((variance[mask] < FLAT_SPREAD ** 2).mean())


def check_texture(check: LungCheck, flat: float, max_flat: float | None) -> LungCheck:
    """``check`` with the flat share of its lungs recorded, and no longer plausible where more of them is flat than
    ``max_flat`` (``fit-lung-floor``: the flattest validation radiograph's share). The segmenter and its confidence
    judge the outline; this judges what lies inside it. A pair already refused keeps its first reason."""
    check = replace(check, flat=flat)
    if max_flat is None or not check.plausible or not flat > max_flat:
        return check
    return replace(check, plausible=False, reason=(
        f"{flat:.0%} of the lungs the segmenter marked is flat, without the vessels, ribs and noise of a radiograph: "
        "a drawing or a rendered page, or a film whose lungs are burnt out to one grey level (export it with its full "
        f"grey range); no validation radiograph had more than {max_flat:.1%}"))


def flat_limit(validation_flat: np.ndarray) -> float:
    """The largest flat share of any validation film's lungs, rounded up to a thousandth: no validation radiograph
    is refused for it."""
    values = np.asarray(validation_flat, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no validation film has a pair of lungs to set a flat-lung limit by")
    return math.ceil(float(values.max()) * 1000) / 1000


def confidence_floor(validation_confidences: np.ndarray) -> float:
    """The least confidence of any validation film with a pair of lungs, rounded down to a thousandth: no
    validation radiograph is refused, not even the one that set it when another engine rounds it lower."""
    values = np.asarray(validation_confidences, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no validation film has a pair of lungs to set a confidence floor by")
    return math.floor(float(values.min()) * 1000) / 1000


def field_box(mask: np.ndarray, shape: tuple[int, int], margin: float = FIELD_MARGIN
              ) -> tuple[int, int, int, int]:
    """(top, left, height, width) in an image of ``shape`` whose resized copy gave ``mask``: the box
    around the mask, widened by ``margin`` on each side and clipped. The whole image when the mask is empty."""
    h, w = shape
    binary = np.asarray(mask) > 0.5
    if not binary.any():
        return 0, 0, h, w
    rows, cols = np.nonzero(binary.any(axis=1))[0], np.nonzero(binary.any(axis=0))[0]
    sy, sx = h / binary.shape[0], w / binary.shape[1]
    top, bottom = rows[0] * sy, (rows[-1] + 1) * sy
    left, right = cols[0] * sx, (cols[-1] + 1) * sx
    my, mx = (bottom - top) * margin, (right - left) * margin
    top, left = max(0, int(np.floor(top - my))), max(0, int(np.floor(left - mx)))
    bottom, right = min(h, int(np.ceil(bottom + my))), min(w, int(np.ceil(right + mx)))
    return top, left, bottom - top, right - left


def map_on_grid(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A non-negative heatmap resized (bilinear) to a mask's grid of ``shape``, as the page draws it: every
    measure of where a map points reads it on the same grid as the mask it is compared with."""
    return cv2.resize(np.clip(np.asarray(cam, dtype=np.float32), 0, None), (shape[1], shape[0]),
                      interpolation=cv2.INTER_LINEAR)


def lung_energy(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of a non-negative heatmap's total inside the mask; NaN for an all-zero map, which has no
    energy to place. The map is resized (bilinear) to the mask's grid, as the page draws it: at 128 px
    input a DenseNet map is 4 x 4, too coarse to hold a lung outline."""
    mask = np.asarray(mask) > 0.5
    cam = map_on_grid(cam, mask.shape)
    total = float(cam.sum(dtype=np.float64))
    if total <= 0:
        return float("nan")
    return float(cam[mask].sum(dtype=np.float64) / total)
