"""Uploaded bytes to a checked :class:`~covidviz.io.xray.Xray`: the single entry point for every input."""

from __future__ import annotations

from pathlib import Path

from covidviz.errors import XrayInputError
from covidviz.io.dicom import read_dicom
from covidviz.io.raster import read_raster
from covidviz.io.xray import MAX_PIXELS, MIN_SIDE, Xray

MAX_UPLOAD_MB = 50  # Streamlit's server.maxUploadSize in .streamlit/config.toml must equal this (tested)
MAX_BYTES = MAX_UPLOAD_MB * 1024 * 1024  # Streamlit's megabyte
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def sniff_format(data: bytes, filename: str = "") -> str | None:
    """"PNG", "JPEG" or "DICOM" from the content (the name only breaks ties for preamble-less DICOM)."""
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(_JPEG):
        return "JPEG"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    if filename.lower().endswith(DICOM_SUFFIXES):
        return "DICOM"  # no preamble: pydicom may still read a bare data set
    return None


def load_xray(data: bytes, filename: str = "") -> Xray:
    """Decode an upload; raise :class:`XrayInputError` with a user-facing message when it cannot be used."""
    if not data:
        raise XrayInputError("The file is empty (0 bytes).")
    if len(data) > MAX_BYTES:
        raise XrayInputError(f"The file is {len(data) / 2**20:.0f} MB, over the {MAX_UPLOAD_MB} MB limit.")
    kind = sniff_format(data, filename)
    if kind is None:
        suffix = Path(filename).suffix or "no extension"
        raise XrayInputError(f"The file ({suffix}) is not a PNG, JPEG or DICOM image.")
    xray = read_dicom(data) if kind == "DICOM" else read_raster(data, kind)
    if xray.pixels.ndim != 2 or xray.height * xray.width > MAX_PIXELS:  # the readers' contract, checked for all
        raise XrayInputError(f"The image decodes to an array of shape {xray.pixels.shape}, not one "
                             f"{MAX_PIXELS // 1_000_000}-megapixel-or-smaller grayscale image.")
    if min(xray.height, xray.width) < MIN_SIDE:
        raise XrayInputError(
            f"The image is {xray.width} x {xray.height} px, too small to read (the shorter side must be at least {MIN_SIDE} px).")
    return xray


def file_bytes(path: str | Path) -> bytes:
    """A file's bytes, or :class:`XrayInputError` saying why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise XrayInputError(f"The file cannot be read ({exc.strerror}).") from None


def load_xray_file(path: str | Path) -> Xray:
    """Read a trusted file from disk (the collection, fixtures) through the same checks as an upload."""
    return load_xray(file_bytes(path), Path(path).name)
