"""Errors a user can act on: each says what is wrong and what is accepted."""

from __future__ import annotations

from covidviz.io.xray import MAX_PIXELS, MIN_SIDE

ACCEPTED = (
    "Accepted: a single frontal chest radiograph as PNG (8- or 16-bit), JPEG, or DICOM "
    "(uncompressed, JPEG baseline, JPEG lossless or JPEG 2000), at least "
    f"{MIN_SIDE} px on its shorter side and at most {MAX_PIXELS // 1_000_000} megapixels."
)


class XrayInputError(ValueError):
    """An upload that cannot be read as a chest X-ray. ``str(err)`` is safe to show a user."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{problem} {ACCEPTED}")


class WeightsError(RuntimeError):
    """Model weights that are missing, corrupt or do not match their sidecar."""
