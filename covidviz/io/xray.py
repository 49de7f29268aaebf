"""The decoded X-ray handed from the loaders to everything else."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SIDE = 64
MAX_PIXELS = 50_000_000  # ~7000 x 7000: above any detector, below what exhausts memory
COLOUR_THRESHOLD = 0.04  # mean |channel - gray| above this: a colour picture, not a radiograph


@dataclass(frozen=True)
class Xray:
    """A grayscale radiograph in [0, 1] (float32, H x W, bright = dense) and what a reader needs.

    ``info`` holds display facts only (format, size, and for DICOM modality, view position,
    body part, pixel spacing); patient identifiers are never copied into it.
    ``warnings`` are reasons to doubt the prediction that do not stop it.
    ``colourfulness`` is how far the decoded picture was from gray (mean |channel - gray|, 0 to 1 units;
    0 for a grayscale file): a radiograph has no colour, so above :data:`COLOUR_THRESHOLD` the model
    gives the image no class (a photograph can otherwise pass the feature guard, see ``ood.py``).
    """

    pixels: np.ndarray
    info: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    colourfulness: float = 0.0

    @property
    def colourful(self) -> bool:
        """A colour picture (a photograph, a figure with coloured marks), not a radiograph."""
        return self.colourfulness > COLOUR_THRESHOLD

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's convert("L")


def colourfulness(rgb: np.ndarray, gray: np.ndarray) -> float:
    """Mean |channel - gray| of an H x W x 3+ colour image in [0, 1] and its luminance ``gray``: 0 when the
    channels are equal (a radiograph saved as RGB); 0.055 to 0.18 for scikit-image's colour pictures (measured)."""
    return float(np.abs(rgb[..., :3] - gray[..., None]).mean())


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance (float32) of an H x W x 3+ colour image, in the units of its channels (extra channels ignored)."""
    return rgb[..., :3].astype(np.float32, copy=False) @ LUMA_WEIGHTS


def to_unit_range(values: np.ndarray) -> np.ndarray:
    """Min-max scale to a new float32 array in [0, 1]; a constant image becomes all zeros.

    Written as one float32 array filled in place: a 46 MB 16-bit DICOM decoded through two float32
    temporaries cost the decoding worker 184 MB more at its peak, and twice the time. Rounding to float32 is
    monotonic, so the extremes taken before it are those of the float32 values."""
    lo, hi = float(np.float32(values.min())), float(np.float32(values.max()))
    if hi - lo <= 0:
        return np.zeros(values.shape, np.float32)
    out = np.subtract(values, np.float32(lo), dtype=np.float32)
    out /= np.float32(hi - lo)
    return out
