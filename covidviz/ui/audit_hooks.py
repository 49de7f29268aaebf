"""The Diagnose page's audit records: one per upload read (not per rerun), one per heatmap method shown.

Streamlit reruns the page script on every click; the session remembers what it already recorded, so the
log holds what a person was shown, once.
"""

from __future__ import annotations

import functools
import hashlib
import logging

import streamlit as st

from covidviz.audit.events import content_sha256
from covidviz.audit.recorder import record_heatmap, record_prediction, record_rejection
from covidviz.explain.reading import Reading
from covidviz.model.ood import colour_message, lung_message, ood_message
from covidviz.model.predictor import Predictor

INTERFACE = "dashboard"
MAX_REMEMBERED = 2000  # per session; only bounds memory, a forgotten key at worst records a view again


log = logging.getLogger("covidviz.audit")


def _never_raises(hook):
    """An audit hook's failure is logged; the page the person is looking at renders regardless."""
    @functools.wraps(hook)
    def guarded(*args, **kwargs) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("audit hook %s failed", hook.__name__)
    return guarded


def _canonical_key(reading: Reading) -> str:
    return hashlib.sha1(reading.canonical.tobytes()).hexdigest()


def _remember(name: str) -> dict:
    store = st.session_state.setdefault(name, {})
    while len(store) > MAX_REMEMBERED:
        store.pop(next(iter(store)))
    return store


def input_sha256(reading: Reading) -> str | None:
    """The sha256 of the upload a reading came from, as its audit record holds it (None before it was read
    in this session): what a reader's verdict joins the audit log by."""
    return _remember("audit_inputs").get(_canonical_key(reading))


@_never_raises
def audit_reading(predictor: Predictor, data: bytes, outcome: Reading | str) -> None:
    """Record a fresh reading (or rejection) of an upload. Called where the page computes it, so a rerun
    that reuses the cached reading records nothing."""
    sha = content_sha256(data)
    if isinstance(outcome, str):
        record_rejection(INTERFACE, data, outcome, sidecar=predictor.sidecar)
        return
    _remember("audit_inputs")[_canonical_key(outcome)] = sha
    ood = None
    if outcome.guard is not None:
        ood = "outlier" if outcome.is_outlier else "unusual" if outcome.is_unusual else "typical"
    check = outcome.lung_check
    notes = tuple(n for n in (colour_message(outcome.xray.colourful), lung_message(check),
                              ood_message(outcome.ood_distance, outcome.guard)) if n)
    record_prediction(INTERFACE, data, outcome.probabilities, sidecar=predictor.sidecar,
                      warnings=notes + outcome.xray.warnings, ood=ood, ood_distance=outcome.ood_distance,
                      lung_field_plausible=None if check is None else bool(check.plausible),
                      verdict=outcome.verdict(predictor))


@_never_raises
def audit_heatmap(reading: Reading, predictor: Predictor, method: str, class_name: str,
                  lung_energy: float | None) -> None:
    """Record the first time this session shows ``method``'s maps for this reading."""
    key = (_canonical_key(reading), method)
    shown = _remember("audit_heatmaps")
    if key in shown:
        return
    shown[key] = True
    record_heatmap(INTERFACE, _remember("audit_inputs").get(key[0]), method, sidecar=predictor.sidecar,
                   class_name=class_name, lung_energy=lung_energy)
