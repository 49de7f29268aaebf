"""What DICOM results are made from: the source's header and the heatmap chosen for the Secondary Capture.

Light on purpose (pydicom only, no highdicom): the Diagnose page keeps DICOM uploads' headers at every
upload, and pays for highdicom only when someone asks for the results.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset

from covidviz.explain.cam.methods import FAST_METHOD, SCALES
from covidviz.io.loading import sniff_format
from covidviz.model.decision import DecisionRule

if TYPE_CHECKING:
    from covidviz.explain.reading import Reading

REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class DicomResultError(ValueError):
    """Why DICOM results cannot be made for an input, in words a reader can act on."""


@dataclass(frozen=True)
class HeatmapChoice:
    """Which map goes into the Secondary Capture and how it is drawn; the defaults are the Diagnose page's."""

    method: str = FAST_METHOD
    class_index: int | None = None  # None: the class the model's decision rule picks
    scale: str = SCALES[0]
    style: str = "heatmap"
    colormap: str = "inferno"
    opacity: float = 0.45
    threshold: float = 0.0
    lung_outline: bool = True

    def class_for(self, reading: Reading, rule: DecisionRule) -> int:
        """The chosen class, else the one ``rule`` (the predictor's ``decision``) picks from the probabilities:
        the map matches the class the page and the SR state."""
        return int(rule.indices(reading.probabilities)[0]) if self.class_index is None else self.class_index


def source_header(data: bytes, name: str = "") -> Dataset:
    """The source's header (no pixel data), checked to hold what a result must reference.

    Raises :class:`DicomResultError` for non-DICOM input or a header without the UIDs a result is filed by."""
    if sniff_format(data, name) != "DICOM":
        raise DicomResultError("DICOM results need a DICOM input: they must carry its patient and study, which a "
                               "PNG or JPEG does not have.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's tolerance warnings quote values, which may be the patient's
        try:  # pydicom converts elements when first read: a malformed UID raises here, not in dcmread
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            missing = [k for k in REQUIRED_UIDS if not str(header.get(k, "") or "").strip()]
        except Exception as exc:  # noqa: BLE001  (pydicom raises many types for broken files)
            raise DicomResultError(f"The DICOM header cannot be read ({type(exc).__name__}).") from None
    if missing:
        raise DicomResultError(f"The DICOM header lacks {', '.join(missing)}: results could not be filed with "
                               "the source study.")
    return header
