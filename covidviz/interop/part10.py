"""The one way a DICOM dataset becomes file bytes here (DICOM Part 10: preamble, file meta, data set), for
downloads, STOW-RS, and images retrieved by WADO-RS."""

from __future__ import annotations

import io
import warnings

from pydicom.dataset import Dataset


def part10(dataset: Dataset) -> bytes:
    """A DICOM Part 10 file in memory."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning about an odd value would quote it, and it may be the patient's
        dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
