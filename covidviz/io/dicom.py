"""DICOM decoding with pydicom: grayscale pixels plus the few tags a reader needs.

The dataset object never leaves this module: only whitelisted, non-identifying tags are
copied out, so patient name, ID, birth date and the like cannot be logged or shown.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from covidviz.errors import XrayInputError
from covidviz.io.xray import MAX_PIXELS, Xray, rgb_to_gray, to_unit_range

RADIOGRAPH_MODALITIES = {"CR", "DX"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}


def read_dicom(data: bytes) -> Xray:
    """Decode one single-frame DICOM image to a grayscale :class:`Xray` (bright = dense)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity it tolerates; none is actionable here
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            raise XrayInputError(f"The DICOM file is truncated or corrupt ({type(exc).__name__}).") from None
        try:
            return _to_xray(ds)
        except XrayInputError:
            raise
        except Exception as exc:  # a malformed element anywhere: say so instead of failing the app
            raise XrayInputError(f"The DICOM file is malformed and cannot be read ({type(exc).__name__}).") from None


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
    if rows * cols > MAX_PIXELS:
        raise XrayInputError(f"The DICOM image is {cols} x {rows} px, too large to process.")
    pixels = _decode_pixels(ds)
    info = _reader_info(ds, pixels.shape)
    return Xray(pixels=pixels, info=info, warnings=tuple(_warnings(ds)))


def _decode_pixels(ds: pydicom.Dataset) -> np.ndarray:
    try:
        raw = ds.pixel_array  # honours BitsStored and PixelRepresentation
    except Exception as exc:  # pydicom raises many types for broken or unsupported pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise XrayInputError(f"The DICOM pixel data cannot be decoded ({name}: {type(exc).__name__}).") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim == 3:  # colour DICOM (secondary capture): luminance, with a warning from _warnings
        return to_unit_range(rgb_to_gray(raw))
    values = apply_modality_lut(raw, ds)  # rescale slope/intercept or modality LUT
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = _apply_voi_if_sane(values, ds)
    image = to_unit_range(np.asarray(values))
    if photometric == "MONOCHROME1":  # 0 is white: invert so that bright means dense
        image = 1.0 - image
    return image


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
