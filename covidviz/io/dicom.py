"""DICOM decoding with pydicom: grayscale pixels plus the few tags a reader needs.

The dataset object never leaves this module: only whitelisted, non-identifying tags are
copied out, so patient name, ID, birth date and the like cannot be logged or shown.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian

from covidviz.errors import XrayInputError
from covidviz.io.limits import check_jpeg_density, check_size
from covidviz.io.xray import MAX_PIXELS, Xray, colourfulness, rgb_to_gray, to_unit_range

RADIOGRAPH_MODALITIES = {"CR", "DX"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
MAX_VALUE = 1e30  # rescaled pixel values: far beyond any detector, well inside float32
MAX_INFLATED = 4 * MAX_PIXELS  # bytes of a deflated data set: the largest accepted image at 32 bits per pixel
MAX_AFTER_DEFLATE = 64  # bytes after the end of a deflated data set: padding, not another file spliced on


def read_dicom(data: bytes) -> Xray:
    """Decode one single-frame DICOM image to a grayscale :class:`Xray` (bright = dense).

    Every exception on the read path becomes an :class:`XrayInputError`: pydicom converts elements lazily, so
    a malformed header can raise any of its types (``NotImplementedError`` for an unknown VR, ``KeyError``,
    ``struct.error``, ``zlib.error``...) from wherever a tag is first read, not only from ``dcmread``.
    ``MemoryError`` is left alone: the isolated decoder reports it as a file that needs too much memory.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity it tolerates; none is actionable here
        try:
            _check_inflated_size(data)
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except (XrayInputError, MemoryError):
            raise
        except Exception as exc:
            raise XrayInputError(f"The DICOM file is truncated or corrupt ({_kind(exc)}).") from exc
        try:
            return _to_xray(ds)
        except (XrayInputError, MemoryError):
            raise
        except Exception as exc:  # a malformed element anywhere: say so instead of failing the app
            raise XrayInputError(f"The DICOM file is malformed and cannot be read ({_kind(exc)}).") from exc


def _check_inflated_size(data: bytes) -> None:
    """Refuse a deflate bomb: pydicom inflates a deflated data set whole, and 50 MB can inflate to 50 GB.

    The loop always ends: it stops at the end of the deflate stream, at the size limit, or at the first call
    that neither consumes input nor produces output (a truncated stream). Once the stream has ended, zlib keeps
    returning the same unconsumed tail, so a loop that waits for the tail to empty can spin forever.
    """
    if DeflatedExplicitVRLittleEndian.encode() not in data[:4096]:  # the file meta group, which names it, is first
        return
    stream = io.BytesIO(data)
    pydicom.filereader.read_preamble(stream, force=True)
    meta = pydicom.filereader._read_file_meta_info(stream)  # private, but the very reader dcmread uses
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater, pending, inflated = zlib.decompressobj(-zlib.MAX_WBITS), data[stream.tell():], 0
    while not inflater.eof and inflated <= MAX_INFLATED:
        try:
            out = inflater.decompress(pending, 2**20)  # a MiB at a time: bounded memory
        except zlib.error:
            return  # dcmread reports the corrupt stream
        tail = inflater.unconsumed_tail
        if not out and len(tail) >= len(pending):
            break
        inflated, pending = inflated + len(out), tail
    if inflated > MAX_INFLATED:
        raise XrayInputError(f"The deflated DICOM data set inflates to over {MAX_INFLATED / 2**20:.0f} MB, more "
                             f"than a {MAX_PIXELS // 1_000_000}-megapixel image needs.")
    trailing = len(inflater.unused_data) if inflater.eof else 0
    if trailing > MAX_AFTER_DEFLATE:
        raise XrayInputError(f"The deflated DICOM data set ends {trailing:,} bytes before the file does: the file is "
                             "corrupt or two files were joined.")


def _kind(exc: BaseException) -> str:
    """The exception's class name, with its module where the name alone says nothing (zlib's ``error``)."""
    name = type(exc).__name__
    return f"{type(exc).__module__}.{name}" if name.islower() else name


def _int_tag(ds: pydicom.Dataset, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        raise XrayInputError(f"The DICOM header is malformed: {keyword} is not a number.") from None


def _to_xray(ds: pydicom.Dataset) -> Xray:
    if "PixelData" not in ds:
        raise XrayInputError("The DICOM file holds no image (no Pixel Data element): it may be a report or a structured document.")
    frames = _int_tag(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise XrayInputError(f"The DICOM file holds {frames} frames (a cine loop or volume); upload a single radiograph.")
    rows, cols = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    check_size(cols, rows, "DICOM")
    _check_codestream(ds, rows, cols)
    pixels, colour = _decode_pixels(ds)
    info = _reader_info(ds, pixels.shape)
    return Xray(pixels=pixels, info=info, warnings=tuple(_warnings(ds)), colourfulness=colour)


def _check_codestream(ds: pydicom.Dataset, rows: int, cols: int) -> None:
    """Compare a compressed frame's own size with Rows x Columns before any decoder sees it.

    The JPEG and JPEG 2000 decoders allocate by the codestream's header, not the DICOM's: a JPEG whose frame
    height is 0 (to be "defined later", which DICOM forbids) made libjpeg grow its buffers without bound, and
    a size that disagrees with Rows x Columns cannot be reshaped into the image anyway.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed or syntax not in _CODESTREAM_SIZE:
        return  # RLE and deflate: their decoders size the output from Rows x Columns
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:
        raise XrayInputError(f"The DICOM pixel data is not valid encapsulated {syntax.name} ({_kind(exc)}).") from None
    size = _CODESTREAM_SIZE[syntax](frame[:65536])
    if size is None:
        raise XrayInputError(f"The DICOM pixel data is not a readable {syntax.name} image (its frame header "
                             "is missing or malformed).")
    height, width = size
    if syntax in pydicom.uid.JPEGTransferSyntaxes:
        check_jpeg_density(width, height, len(frame), "DICOM's JPEG image")
    if (height, width) != (rows, cols):
        raise XrayInputError(f"The DICOM's compressed image is {width} x {height} px but its header says "
                             f"{cols} x {rows} px (Columns x Rows); the two must agree.")


def _jpeg_size(stream: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG or JPEG-LS frame header (SOFn or SOF55), or None."""
    if not stream.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(stream):
        if stream[at] != 0xFF:
            return None
        marker = stream[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", stream[at + 2:at + 4])
        if marker in _SOF_MARKERS:
            if at + 9 > len(stream):
                return None
            return struct.unpack(">HH", stream[at + 5:at + 9])
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or start of scan before any frame header
            return None
        at += 2 + length
    return None


def _j2k_size(stream: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG 2000 SIZ marker segment (bare codestream or inside a JP2 file), or None."""
    at = stream.find(b"\xff\x4f\xff\x51")
    if at < 0 or at + 24 > len(stream):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", stream[at + 8:at + 24])
    return (ysiz - yosiz, xsiz - xosiz) if ysiz >= yosiz and xsiz >= xosiz else None


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_CODESTREAM_SIZE = {
    **dict.fromkeys(pydicom.uid.JPEGTransferSyntaxes + pydicom.uid.JPEGLSTransferSyntaxes, _jpeg_size),
    **dict.fromkeys(pydicom.uid.JPEG2000TransferSyntaxes, _j2k_size),
}


def _decode_pixels(ds: pydicom.Dataset) -> tuple[np.ndarray, float]:
    """The image in [0, 1] (bright = dense) and its colourfulness (0 for a grayscale photometric)."""
    try:
        raw = ds.pixel_array  # honours BitsStored and PixelRepresentation
    except Exception as exc:  # pydicom raises many types for broken or unsupported pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise XrayInputError(f"The DICOM pixel data cannot be decoded ({name}: {_kind(exc)}).") from None
    colour = _int_tag(ds, "SamplesPerPixel", 1) > 1
    if raw.ndim != (3 if colour else 2) or (colour and raw.shape[-1] < 3):
        # e.g. no Number of Frames but pixel data for several: pydicom then returns a stack
        raise XrayInputError(f"The DICOM pixel data decodes to an array of shape {raw.shape}, not one "
                             f"{'colour' if colour else 'grayscale'} image; upload a single-frame radiograph.")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if colour:  # colour DICOM (secondary capture): luminance, with a warning from _warnings
        rgb = to_unit_range(raw[..., :3])
        gray = rgb_to_gray(rgb)
        return to_unit_range(gray), colourfulness(rgb, gray)
    values = _checked_range(apply_modality_lut(raw, ds))  # rescale slope/intercept or modality LUT
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = _apply_voi_if_sane(values, ds)
    image = to_unit_range(np.asarray(values))
    if photometric == "MONOCHROME1":  # 0 is white: invert (in place: the array is ours) so that bright means dense
        np.subtract(np.float32(1.0), image, out=image)
    return image, 0.0


def _checked_range(values: np.ndarray) -> np.ndarray:
    """Refuse rescaled values no detector produces (NaN, infinite, or beyond float32, where scaling breaks)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if not (abs(lo) <= MAX_VALUE and abs(hi) <= MAX_VALUE):
        raise XrayInputError(
            f"The DICOM pixel values (after Rescale Slope/Intercept or Modality LUT) run from {lo:.3g} to "
            f"{hi:.3g}; finite values within +/-{MAX_VALUE:.0e} are accepted.")
    return values


def _apply_voi_if_sane(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Apply the VOI LUT or window; fall back to the full range when it would flatten the image."""
    try:
        windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float32)
    except Exception:  # malformed window or LUT: the full range is still a faithful display
        return values
    return windowed if float(windowed.std()) > 1e-6 else values


def _reader_info(ds: pydicom.Dataset, shape: tuple[int, ...]) -> dict[str, str]:
    info = {"format": "DICOM", "size": f"{shape[1]} x {shape[0]} px"}
    for key, tag in (("modality", "Modality"), ("view position", "ViewPosition"),
                     ("body part", "BodyPartExamined"), ("photometric", "PhotometricInterpretation")):
        value = str(ds.get(tag, "") or "").strip()
        if value:
            info[key] = value
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0:
        info["pixel spacing"] = f"{float(spacing[0]):.3f} x {float(spacing[1]):.3f} mm"
    if "BitsStored" in ds:
        info["bits stored"] = str(ds.BitsStored)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        info["transfer syntax"] = syntax.name
    return info


def _warnings(ds: pydicom.Dataset) -> list[str]:
    found = []
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        found.append(f"Modality is {modality}, not a radiograph (CR or DX): the model was trained on chest radiographs only.")
    body_part = str(ds.get("BodyPartExamined", "") or "").upper()
    if body_part and "CHEST" not in body_part and "THORAX" not in body_part:
        found.append(f"Body part is {body_part}, not chest: the prediction is not meaningful for this image.")
    view = str(ds.get("ViewPosition", "") or "").upper()
    if view in LATERAL_VIEWS:
        found.append(f"View position is {view} (lateral): the model was trained on frontal (PA/AP) views.")
    if _int_tag(ds, "SamplesPerPixel", 1) > 1:
        found.append("This DICOM holds a colour image; radiographs are grayscale. It was converted to grayscale.")
    return found
