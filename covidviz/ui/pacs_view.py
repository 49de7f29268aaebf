"""The PACS worklist page: studies from the configured DICOMweb server with the model's scores, any image
opened in Diagnose, results stored back on request.

An opened image travels to Diagnose in this session's state (its bytes, fetched once over WADO-RS), not in
the URL: a Study Instance UID in an address bar ends up in browser histories and proxy logs. The worklist
shows dates, accession numbers and descriptions, never a patient attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.text import plain

if TYPE_CHECKING:
    from covidviz.interop.pacs import ImageRef
    from covidviz.interop.pacs_session import PacsSettings
    from covidviz.interop.worklist import StudyScore

OPENED = "pacs_opened"  # session key: what the worklist handed to Diagnose
SCORES = "pacs_scores"  # session key: (server, study UID, model) -> StudyScore
MAX_SCORED = 500
DIAGNOSE_PAGE = "app_pages/diagnose.py"
TABLE_COLUMNS = ["date", "accession", "modalities", "description", "image", "label",
                 *(f"p_{c}" for c in CLASSES), "flags", "note"]


@dataclass(frozen=True)
class FetchedImage:
    """An image retrieved from the PACS, shaped like an upload (``name`` and ``getvalue()``) for Diagnose."""

    name: str
    data: bytes
    origin: str  # how the page names where it came from: study date, accession, image

    def getvalue(self) -> bytes:
        return self.data


def opened_from_pacs() -> list[FetchedImage]:
    """For the Diagnose page: the image opened from the worklist, if any, with a note and a way to close it."""
    opened = st.session_state.get(OPENED) or []
    if opened:
        left, right = st.columns([5, 1])
        left.info(f"Opened from the PACS: {plain(', '.join(image.origin for image in opened))}.")
        if right.button("Close", key="pacs_close", help="Remove the PACS image from this page"):
            st.session_state.pop(OPENED, None)
            st.rerun()
    return list(opened)


def _settings() -> PacsSettings | None:
    from covidviz.interop.pacs_session import ENV_PASSWORD, ENV_URL, ENV_USER, PacsError, PacsSettings
    try:
        return PacsSettings.from_env()
    except PacsError as exc:
        st.info(f"{exc}\n\nThe dashboard reads {ENV_URL} (and {ENV_USER} / {ENV_PASSWORD}) from its environment "
                "when it starts; `python -m covidviz pacs demo` starts a local Orthanc to try it.")
        return None


def _filters() -> tuple[str, str, str, int]:
    from covidviz.io.dicom import RADIOGRAPH_MODALITIES  # what the model reads; imported here, not by Diagnose
    c1, c2, c3, c4 = st.columns([3, 1, 2, 1])
    date_text = c1.text_input("Study date", key="pacs_date", placeholder="2024-03-01 or 2024-03-01..2024-03-31",
                              help="A day, or a range with .. (either end may be left open). Empty: any date.")
    modality = c2.selectbox("Modality", ("any", *sorted(RADIOGRAPH_MODALITIES)), key="pacs_modality")
    accession = c3.text_input("Accession number", key="pacs_accession")
    limit = int(c4.number_input("At most", 1, 200, 20, key="pacs_limit", help="studies listed and scored"))
    return date_text, "" if modality == "any" else modality, accession, limit


def render_worklist() -> None:
    settings = _settings()
    if settings is None:
        return
    from covidviz.interop.pacs import search_studies, study_filters
    from covidviz.interop.pacs_session import PacsError, connect
    st.caption(f"Server: {settings.where}" + (" (signed in)" if settings.user or settings.token else ""))
    date_text, modality, accession, limit = _filters()
    client = connect(settings)
    try:
        studies = search_studies(client, settings, study_filters(date_text, modality, accession), limit=limit)
    except PacsError as exc:
        st.error(plain(str(exc)))  # may echo what the PACS answered
        return
    if not studies:
        st.info("No studies match these filters.")
        return
    scored = _scores(client, settings, studies)
    if scored is None:
        return
    import pandas as pd
    rows = [row for score in scored for row in score.rows()]
    table = pd.DataFrame(rows)[TABLE_COLUMNS]
    st.dataframe(table, hide_index=True, key="pacs_table",
                 column_config={f"p_{c}": st.column_config.NumberColumn(CLASS_TITLES[c], format="%.3f")
                                for c in CLASSES})
    st.caption("Calibrated probabilities of each study's frontal chest radiographs; studies without one say why. "
               "Decision support only: open an image to see its heatmaps.")
    _actions(client, settings, scored)


def _scores(client, settings: PacsSettings, studies) -> list[StudyScore] | None:
    """Each study's scores, computed once per session and model (a progress bar while new ones are read)."""
    from covidviz.errors import WeightsError
    from covidviz.interop.pacs_session import PacsError
    from covidviz.interop.worklist import StudyScore, score_study
    from covidviz.ui.compute_queue import queued
    from covidviz.ui.resources import get_predictor, weights_dir
    try:
        predictor = get_predictor(weights_dir())
    except WeightsError as exc:  # its text names server paths: the log gets it, the page a plain message
        from covidviz.ui.request_log import log_failure
        log_failure("loading the model", exc)
        st.error("The model could not be loaded: its files are missing or fail verification (details in the "
                 "server's log).")
        return None
    kept: dict = st.session_state.setdefault(SCORES, {})
    model = predictor.sidecar["weights_sha256"]
    missing = [s for s in studies if (settings.url, s.study_uid, model) not in kept]
    failed: dict[str, StudyScore] = {}  # shown this time, not kept: the next rerun tries again
    if missing:
        bar = st.progress(0.0, text=f"Scoring {len(missing)} studies…")
        for n, study in enumerate(missing):
            try:
                with queued(f"Study {n + 1} of {len(missing)}"):  # the server's one queue for model passes
                    kept[(settings.url, study.study_uid, model)] = score_study(client, settings, predictor, study)
            except PacsError as exc:
                failed[study.study_uid] = StudyScore(study=study, note=str(exc))
            bar.progress((n + 1) / len(missing), text=f"Scored {n + 1} of {len(missing)} studies")
        bar.empty()
    # the scores are kept, the study facts are today's (stored results add modalities OT and SR)
    shown = [failed[s.study_uid] if s.study_uid in failed else replace(kept[(settings.url, s.study_uid, model)], study=s)
             for s in studies]
    while len(kept) > MAX_SCORED:
        kept.pop(next(iter(kept)))
    return shown


def _image_label(score: StudyScore, ref: ImageRef, label: str | None, abstained: str | None = None) -> str:
    verdict = CLASS_TITLES[label] if label else "no class given" if abstained else "not read"
    return f"{score.study.label} · {ref.description} · {verdict}"


def _actions(client, settings: PacsSettings, scored: list[StudyScore]) -> None:
    options = {_image_label(score, image.ref, image.label, image.abstained): (score, image.ref)
               for score in scored for image in score.images}
    if not options:
        return
    choice = st.selectbox("Image", list(options), key="pacs_image")
    score, ref = options[choice]
    left, right = st.columns(2)
    if left.button("Open in Diagnose", key="pacs_open", type="primary"):
        data = _retrieve(client, settings, ref)
        if data is not None:
            st.session_state[OPENED] = [FetchedImage(ref.name, data, f"{score.study.label}, {ref.description}")]
            st.switch_page(DIAGNOSE_PAGE)
    if right.button("Store results in the PACS", key="pacs_store",
                    help="Send this image's heatmap (Secondary Capture) and result (Structured Report) to its study"):
        _store(client, settings, ref)


def _retrieve(client, settings: PacsSettings, ref: ImageRef) -> bytes | None:
    from covidviz.interop.pacs import retrieve
    from covidviz.interop.pacs_session import PacsError
    try:
        with st.spinner("Retrieving the image…"):
            return retrieve(client, settings, ref)
    except PacsError as exc:
        st.error(plain(str(exc)))  # may echo what the PACS answered
        return None


def _store(client, settings: PacsSettings, ref: ImageRef) -> None:
    from covidviz.errors import XrayInputError
    from covidviz.interop.inputs import DicomResultError
    from covidviz.interop.pacs import store
    from covidviz.interop.pacs_session import PacsError
    from covidviz.interop.worklist import read_image, results_for
    from covidviz.ui.resources import get_predictor, weights_dir
    data = _retrieve(client, settings, ref)
    if data is None:
        return
    predictor = get_predictor(weights_dir())
    try:
        with st.spinner("Making and storing the results…"):
            results = results_for(predictor, data, ref, read_image(predictor, data, ref))
            stored = store(client, settings, [results.sc, results.sr])
    except (PacsError, DicomResultError, XrayInputError) as exc:
        st.error(plain(str(exc)))  # may echo what the PACS answered
        return
    st.success(f"Stored {stored} result objects in the study: the heatmap (Secondary Capture, series "
               f"{results.sc.SeriesNumber}) and the result (Structured Report, series {results.sr.SeriesNumber}).")
