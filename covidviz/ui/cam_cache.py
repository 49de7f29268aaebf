"""The Diagnose page's heatmaps, cached per session: the images and the DICOM Secondary Capture draw the same
map, computed once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.explain.cam.methods import FAST_METHOD, SLOW_METHODS
from covidviz.explain.cam.remote import CamWorker
from covidviz.explain.reading import Reading, heatmap
from covidviz.model.predictor import Predictor
from covidviz.ui.compute_queue import EXPLANATION, queued
from covidviz.ui.diagnose_settings import Settings
from covidviz.ui.request_log import log_event

MAX_CAMS = 120  # three maps for each of the 40 readings a session keeps (diagnose_view.MAX_CACHED)


@st.cache_resource(show_spinner=False)
def get_cam_worker(folder: Path) -> CamWorker:
    """The process that draws the library heatmap methods for the model in ``folder`` (started on first use,
    stopped when idle): the server itself never loads torch for them."""
    return CamWorker(folder)


def cam(reading: Reading, predictor: Predictor, settings: Settings, k: int) -> np.ndarray:
    """The class-``k`` map for a reading under the chosen settings, computed on first use (slow methods wait
    their turn in the compute queue and show progress)."""
    cache = st.session_state.setdefault("cams", {})
    scale = settings.scale if settings.method == FAST_METHOD else "library"
    # keyed by content, not id(): an evicted reading's id can be reused by another image
    key = (hashlib.sha1(reading.canonical.tobytes()).hexdigest(), predictor.version, settings.method, k, scale)
    if key not in cache:
        started = time.perf_counter()
        if settings.method in SLOW_METHODS:
            with queued(f"{settings.method} for {CLASS_TITLES[CLASSES[k]]}", EXPLANATION):
                bar = st.progress(0.0, text=f"{settings.method} for {CLASS_TITLES[CLASSES[k]]}…")
                cache[key] = heatmap(reading, predictor, settings.method, k, settings.scale,
                                     progress=lambda done, total: bar.progress(
                                         done / total, text=f"{settings.method}: {done}/{total}"),
                                     draw=get_cam_worker(predictor.weights_dir).cam)
                bar.empty()
        elif settings.method == FAST_METHOD:  # from the reading's own forward pass: no model run
            cache[key] = heatmap(reading, predictor, settings.method, k, settings.scale)
        else:
            with queued(f"{settings.method} for {CLASS_TITLES[CLASSES[k]]}", EXPLANATION):
                cache[key] = heatmap(reading, predictor, settings.method, k, settings.scale,
                                     draw=get_cam_worker(predictor.weights_dir).cam)
        log_event("heatmap", method=settings.method, class_index=k, scale=scale,
                  heatmap_ms=round((time.perf_counter() - started) * 1000, 1))
        evict_oldest(cache, MAX_CAMS)
    return cache[key]


def evict_oldest(cache: dict, limit: int) -> None:
    """Drop the oldest entries (dicts keep insertion order) until ``limit`` remain."""
    while len(cache) > limit:
        cache.pop(next(iter(cache)))
