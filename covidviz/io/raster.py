"""PNG and JPEG decoding with Pillow, guarded against truncation and decompression bombs."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from covidviz.errors import XrayInputError
from covidviz.io.limits import check_jpeg_density, check_size
from covidviz.io.xray import COLOUR_THRESHOLD, Xray, colourfulness, rgb_to_gray, to_unit_range


def read_raster(data: bytes, kind: str) -> Xray:
    """Decode PNG or JPEG bytes to a grayscale :class:`Xray`; ``kind`` is "PNG" or "JPEG"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_size(*image.size, kind)
            if kind == "JPEG":
                check_jpeg_density(*image.size, len(data), "JPEG file")
            image.load()
    except XrayInputError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise XrayInputError(f"The {kind} image is too large to decode safely ({exc}).") from None
    except UnidentifiedImageError:  # Pillow's own text names an in-memory object, which helps no reader
        raise XrayInputError(f"The {kind} file is truncated or corrupt: its header cannot be read.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise XrayInputError(f"The {kind} file is truncated or corrupt ({exc}).") from None
    except Exception as exc:  # Pillow's decoders raise other types on malformed data too (struct.error, EOFError...)
        raise XrayInputError(f"The {kind} file is malformed and cannot be decoded ({type(exc).__name__}).") from None
    if kind == "JPEG":
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:  # a malformed EXIF block: the orientation, and so left and right, is unknown
            raise XrayInputError(f"The JPEG file's EXIF metadata is corrupt, so its orientation is unknown "
                                 f"({type(exc).__name__}).") from None
    gray, colour = _to_gray(image)
    found_warnings = []
    if colour > COLOUR_THRESHOLD:
        found_warnings.append(
            "This is a colour image; radiographs are grayscale. It may be a photograph or an annotated "
            "figure, which the model was not built for. It was converted to grayscale.")
    info = {"format": kind, "size": f"{image.width} x {image.height} px", "mode": image.mode}
    return Xray(pixels=gray, info=info, warnings=tuple(found_warnings), colourfulness=colour)


def _to_gray(image: Image.Image) -> tuple[np.ndarray, float]:
    """Grayscale in [0, 1] and how colourful the picture was (0 for gray)."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "RGBA", "PA"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        mode = "RGB"
    if mode == "CMYK" or mode == "YCbCr":
        image = image.convert("RGB")
        mode = "RGB"
    if mode == "RGB":
        rgb = np.asarray(image, dtype=np.float32) / 255.0
        gray = rgb_to_gray(rgb)
        return gray, colourfulness(rgb, gray)
    if mode == "1":
        return np.asarray(image, dtype=np.float32), 0.0
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0, 0.0
    if mode.startswith("I") or mode == "F":
        # 16/32-bit: the bit depth actually used is unknown, so scale by the values present.
        return to_unit_range(np.asarray(image)), 0.0
    raise XrayInputError(f"The image has an unsupported pixel mode ({mode}).")
