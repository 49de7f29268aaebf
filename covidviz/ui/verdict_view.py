"""Diagnose's verdict form: under each result a reader says whether they agree, or gives their own class.

The verdict is written at once (the reader then sees it counted on Site performance) with the input's
sha256, the model version, the output and probabilities shown and the calibration that produced them.
Changing it appends a new verdict; the history stays.
"""

from __future__ import annotations

import logging

import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.audit.verdict_store import record_verdict, result_from_sidecar
from covidviz.explain.reading import Reading
from covidviz.model.predictor import Predictor
from covidviz.ui.audit_hooks import input_sha256
from covidviz.ui.reader import current_reader

log = logging.getLogger("covidviz.audit")
CHOICES = {"agree": "Agree", **{c: CLASS_TITLES[c] for c in CLASSES}, "not_assessable": "Not assessable"}
NO_CONFIDENCE = "—"
CONFIDENCES = (NO_CONFIDENCE, "low", "medium", "high")
CONFIDENCE_VALUES = {"low": 0.5, "medium": 0.75, "high": 0.95}


def calibration_caption(predictor: Predictor) -> str:
    """What the probabilities shown are calibrated by: the shipped temperature or this site's profile."""
    return f"Calibrated probabilities: {predictor.calibration.note}."


def verdict_panel(reading: Reading, predictor: Predictor, index: int) -> None:
    """The verdict form for one result, and the reader's verdict once recorded."""
    sha = input_sha256(reading)
    if sha is None:
        return
    key = f"verdict{index}_{sha[:16]}_{predictor.version}"
    recorded = st.session_state.setdefault("verdicts_recorded", {})
    with st.form(key=f"{key}_form", border=True):
        st.markdown("**Your verdict**")
        choice = st.radio("Verdict", list(CHOICES), format_func=CHOICES.get, horizontal=True, key=f"{key}_choice",
                          label_visibility="collapsed")
        confidence = st.select_slider("Confidence (optional)", CONFIDENCES, value=NO_CONFIDENCE,
                                      key=f"{key}_confidence")
        submitted = st.form_submit_button("Record verdict")
    if submitted:
        shown = result_from_sidecar(dict(zip(CLASSES, map(float, reading.probabilities))), predictor.sidecar)
        try:
            record_verdict(sha, current_reader(), choice, shown, confidence=CONFIDENCE_VALUES.get(confidence))
            recorded[key] = CHOICES[choice]
        except Exception as exc:  # noqa: BLE001  (the database's trouble is said, the page goes on)
            log.exception("verdict could not be recorded")
            st.error(f"The verdict could not be recorded ({exc.__class__.__name__}); the result stands.")
    if key in recorded:
        st.success(f"Verdict recorded: {recorded[key]}. It counts on the Site performance page; record another "
                   "to change it (the earlier one is kept in the history).")
