"""The Diagnose page's DICOM downloads: the shown heatmap as a Secondary Capture and the result as a
Structured Report, for DICOM uploads only (a PNG has no patient or study for them to carry).

The two objects are built together on the first click (deferred: no cost on reruns) and kept for the
session, so the SR downloaded with an SC lists that very SC as evidence.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from pydicom.dataset import Dataset

from covidviz.interop.inputs import DicomResultError, HeatmapChoice, source_header
from covidviz.interop.part10 import part10
from covidviz.ui.cam_cache import cam
from covidviz.ui.diagnose_settings import Settings, classes_to_show

if TYPE_CHECKING:
    from covidviz.explain.reading import Reading
    from covidviz.interop.dicom_results import DicomResults
    from covidviz.model.decision import DecisionRule
    from covidviz.model.predictor import Predictor

MAX_KEPT = 4  # result pairs kept per session: an SC of a full-size radiograph is about 10 MB
_SOURCES: dict[int, Dataset] = {}  # id(reading) -> its upload's DICOM header, for as long as the reading lives
_LOCK = threading.Lock()  # the deferred downloads run on Streamlit's threads, not the script's


def keep_dicom_source(reading: Reading | str, data: bytes, name: str) -> None:
    """Remember a DICOM upload's header for its reading (a header only: no pixels, and never shown).
    Called where the page reads an upload; anything else (a PNG, a rejected file) is ignored."""
    if isinstance(reading, str):
        return
    try:
        header = source_header(data, name)
    except DicomResultError:
        return  # not DICOM, or no UIDs to file results by: the page offers no DICOM downloads for it
    key = id(reading)
    _SOURCES[key] = header
    weakref.finalize(reading, _SOURCES.pop, key, None)  # an id is unique only while its object lives


def dicom_source(reading: Reading) -> Dataset | None:
    return _SOURCES.get(id(reading))


def heatmap_choice(reading: Reading, settings: Settings, rule: DecisionRule) -> HeatmapChoice:
    """The map the page shows: the chosen class, or the predicted one when all three are side by side."""
    shown = classes_to_show(reading, settings.view, rule)
    k = shown[0] if len(shown) == 1 else int(rule.indices(reading.probabilities)[0])
    return HeatmapChoice(method=settings.method, class_index=k, scale=settings.scale, style=settings.style,
                         colormap=settings.colormap, opacity=settings.opacity, threshold=settings.threshold,
                         lung_outline=settings.lung_outline)


def dicom_downloads(reading: Reading, predictor: Predictor, settings: Settings, index: int) -> None:
    """Two download buttons under a DICOM upload's images (nothing for other uploads)."""
    header = dicom_source(reading)
    if header is None:
        return
    choice = heatmap_choice(reading, settings, predictor.decision)
    shown_map = cam(reading, predictor, settings, choice.class_index)  # the page's cached map: the SC shows it
    kept: dict = st.session_state.setdefault("dicom_results", {})
    key = (str(header.SOPInstanceUID), hashlib.sha1(reading.canonical.tobytes()).hexdigest(), choice)

    def results() -> DicomResults:
        from covidviz.interop.dicom_results import dicom_results  # highdicom: paid on the first click only
        with _LOCK:
            if key not in kept:
                kept[key] = dicom_results(header, reading, predictor, choice, cam=shown_map)
                while len(kept) > MAX_KEPT:
                    kept.pop(next(iter(kept)))
            return kept[key]

    stem = Path(reading.name).stem
    left, right = st.columns(2)
    left.download_button("Heatmap for PACS (DICOM SC)", data=lambda: part10(results().sc),
                         file_name=f"{stem}.covidviz-sc.dcm", mime="application/dicom", key=f"dicom_sc{index}",
                         on_click="ignore")
    right.download_button("Result for PACS (DICOM SR)", data=lambda: part10(results().sr),
                          file_name=f"{stem}.covidviz-sr.dcm", mime="application/dicom", key=f"dicom_sr{index}",
                          on_click="ignore")
    st.caption("DICOM results file into the upload's study as new series and carry its patient and study "
               "attributes, as DICOM requires. The heatmap has \"not for diagnostic use\" burnt in; the report is "
               "marked unverified.")

