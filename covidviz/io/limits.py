"""Size limits every reader checks from the header, before any pixel is decoded."""

from __future__ import annotations

from covidviz.errors import XrayInputError
from covidviz.io.xray import MAX_PIXELS

# A chest radiograph is roughly square (detectors are 35 x 43 cm, 43 x 43 cm); one six times as long as it is
# wide is not one, and a header claiming it is how a few KB of PNG asked for a 65536 x 256 px decode.
MAX_ASPECT = 6


def check_size(width: int, height: int, kind: str) -> None:
    """Refuse an image too large to process or too elongated to be a chest radiograph."""
    if width * height > MAX_PIXELS:
        raise XrayInputError(f"The {kind} image is {width} x {height} px ({width * height / 1e6:.0f} megapixels), "
                             "too large to process.")
    if min(width, height) > 0 and max(width, height) > MAX_ASPECT * min(width, height):
        raise XrayInputError(f"The {kind} image is {width} x {height} px, more than {MAX_ASPECT} times as long as "
                             "it is wide: not a chest radiograph.")
