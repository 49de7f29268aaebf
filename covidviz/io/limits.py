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


# A DCT JPEG spends at least a few bits on every 8 x 8 block (a flat block: its DC difference and end-of-block
# codes), so no complete JPEG holds more than about 512 pixels per byte; one claiming over 1024 is truncated,
# and its decoder would pad the missing megapixels for seconds (a 6 KB file claiming 4096 x 7072 px took 6 s).
# JPEG-LS (run mode) and JPEG 2000 can compress flat images far more and are not held to this.
MAX_JPEG_PIXELS_PER_BYTE = 1024


def check_jpeg_density(width: int, height: int, nbytes: int, kind: str) -> None:
    """Refuse a DCT JPEG stream far too short for the image its header announces."""
    if width * height > MAX_JPEG_PIXELS_PER_BYTE * max(nbytes, 1):
        raise XrayInputError(f"The {kind} is truncated: {nbytes:,} bytes cannot hold the {width} x {height} px "
                             "image its header announces.")
