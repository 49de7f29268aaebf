"""Streamlit rendering for the Diagnose page. Computation lives in covidviz.explain.reading; this draws it."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.errors import XrayInputError
from covidviz.explain.cam.methods import CLASS_AGNOSTIC, FAST_METHOD, SCALES
from covidviz.explain.case_report import case_report_html
from covidviz.explain.overlay import FIELD_COLOUR, LUNG_COLOUR, downscale, outline, render, to_uint8
from covidviz.explain.reading import Reading, compact, heatmap_on_original, lungs_on_display, read_xray, reading_bytes
from covidviz.io.images import jpeg_bytes, png_bytes
from covidviz.io.isolation import read_untrusted
from covidviz.lungs.field import LOW_LUNG_SHARE
from covidviz.model.predictor import Predictor
from covidviz.text import plain
from covidviz.ui.audit_hooks import audit_heatmap, audit_reading
from covidviz.ui.cam_cache import cam
from covidviz.ui.compute_queue import queued
from covidviz.ui.diagnose_figures import probability_bars, zoomable_image
from covidviz.ui.diagnose_settings import Settings, classes_to_show
from covidviz.ui.dicom_downloads import dicom_downloads, keep_dicom_source
from covidviz.ui.kept_memory import server_kept
from covidviz.ui.request_log import log_event, timer, upload_fields
from covidviz.ui.verdict_view import calibration_caption, verdict_panel

MAX_CACHED = 40  # readings a session keeps (covidviz.ui.cam_cache keeps three maps for each)
SESSION_BYTES = 256 * 2**20  # readings a session keeps (each at most 2048 px a side: about 16 MB + 0.3 MB)
UNLIKELY = 0.2  # a map for a class this improbable is stretched to full range all the same: say so
RESULT_PANEL_PX = 660  # the image panel's width in the wide layout: figures get matching heights
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png"}}


def read_upload(predictor: Predictor, guard, name: str, data: bytes) -> Reading | str:
    """The reading for an upload, or the user-facing reason it was rejected (cached per session)."""
    cache = st.session_state.setdefault("readings", {})
    key = _reading_key(data, name, predictor.version)
    if key not in cache:
        fields = upload_fields(data)  # never the name: file names often are the patient's
        try:
            with timer(fields, "total"):
                with timer(fields, "decode"):  # in a worker process, outside the queue: a hostile file holds no slot
                    xray = read_untrusted(data, name)
                with queued(f"Reading {plain(name)}"), timer(fields, "model"):
                    cache[key] = compact(read_xray(predictor, xray, name, guard))
                del xray  # the full-resolution decode is not kept past this point
        except XrayInputError as exc:
            cache[key] = str(exc)
            fields["rejected"] = exc.__class__.__name__  # not its text: it may echo the name
        log_event("upload read", **fields, model=predictor.version)
        if not isinstance(cache[key], str):
            server_kept().keep(cache[key], reading_bytes(cache[key]))
        evict_to_budget(cache, SESSION_BYTES, MAX_CACHED)
        audit_reading(predictor, data, cache[key])  # once per reading, not per rerun; never raises
        keep_dicom_source(cache[key], data, name)  # a DICOM upload's header, for its SC and SR downloads
    return cache[key]


def read_uploads(predictor: Predictor, guard, uploads) -> list[tuple[str, Reading | str]]:
    """Every upload's reading (or rejection), in order. Over the server-wide bound on kept readings, this
    session then keeps only the readings of the uploads it shows now."""
    outcomes, shown = [], set()
    for upload in uploads:
        data = upload.getvalue()
        shown.add(_reading_key(data, upload.name, predictor.version))
        outcomes.append((upload.name, read_upload(predictor, guard, upload.name, data)))
    if server_kept().over():
        cache = st.session_state.get("readings", {})
        for key in [k for k in cache if k not in shown]:
            cache.pop(key)
    return outcomes


def _reading_key(data: bytes, name: str, model: str) -> str:
    """Per upload and model: switching the model on Diagnose reads the image again, never shows another's."""
    return hashlib.sha1(data).hexdigest() + model + name


def evict_to_budget(cache: dict, budget: int, limit: int) -> None:
    """Drop the oldest readings until the rest fit ``budget`` bytes and ``limit`` entries (the newest is always
    kept: it is the one being shown)."""
    def size(outcome: Reading | str) -> int:
        return len(outcome) if isinstance(outcome, str) else reading_bytes(outcome)

    total = sum(size(v) for v in cache.values())
    while len(cache) > 1 and (total > budget or len(cache) > limit):
        total -= size(cache.pop(next(iter(cache))))


def render_reading(reading: Reading, predictor: Predictor, settings: Settings, index: int) -> None:
    st.subheader(plain(reading.name))  # the upload's name and DICOM values: shown, never interpreted
    if reading.is_outlier:
        st.error(reading.ood_note)
    elif reading.is_unusual:
        st.warning(reading.ood_note)
    for warning in reading.xray.warnings:
        st.warning(plain(warning))
    left, right = st.columns([2, 3])
    with left:
        label, abstained = reading.verdict(predictor)
        if abstained:  # no class where there is none to give: the reason takes the verdict's place
            st.markdown(f"**Model output:** no class given: {abstained}.")
            st.markdown(probability_bars(reading.probabilities, muted=True), unsafe_allow_html=True)
            st.caption("Probabilities greyed: not meaningful for this image.")
        else:
            k = CLASSES.index(label)
            st.markdown(f"**Model output:** {CLASS_TITLES[label]} ({reading.probability(k):.1%})")
            st.markdown(probability_bars(reading.probabilities, chosen=k), unsafe_allow_html=True)
            st.caption(f"Decision rule: {predictor.decision.description}.")
        st.caption(calibration_caption(predictor))
        st.markdown("  \n".join(f"**{plain(key)}:** {plain(value)}" for key, value in reading.xray.info.items()))
        verdict_panel(reading, predictor, index)
    with right:
        _render_images(reading, predictor, settings, index)
        dicom_downloads(reading, predictor, settings, index)


def _render_images(reading: Reading, predictor: Predictor, settings: Settings, index: int) -> None:
    gray = downscale(reading.xray.pixels)
    shown = classes_to_show(reading, settings.view, predictor.decision)
    columns = st.columns(1 + len(shown))
    width = RESULT_PANEL_PX // len(columns)
    _show_image(columns[0], to_uint8(gray), "Original (unaltered)", width, settings.zoom, f"orig{index}")
    overlay_rgb, title, energy_note = None, "", ""
    lungs_shown = lungs_on_display(reading, gray.shape) if settings.lung_outline else None
    for column, k in zip(columns[1:], shown):
        cam_map = cam(reading, predictor, settings, k)
        on_display = heatmap_on_original(reading, cam_map, gray.shape)
        overlay_rgb = render(gray, on_display, settings.style, settings.colormap, settings.opacity, settings.threshold)
        if not reading.box.covers(reading.xray.pixels.shape):
            overlay_rgb = outline(overlay_rgb, ~np.isnan(on_display), FIELD_COLOUR, dashed=True)
        if lungs_shown is not None:
            overlay_rgb = outline(overlay_rgb, lungs_shown, LUNG_COLOUR)
        title = f"{settings.method}: {CLASS_TITLES[CLASSES[k]]} · p = {reading.probability(k):.1%}"
        _show_image(column, overlay_rgb, title, width, settings.zoom, f"cam{index}_{k}")
        if reading.probability(k) < UNLIKELY:
            column.warning(f"{CLASS_TITLES[CLASSES[k]]} is unlikely here (p = {reading.probability(k):.1%}): this map "
                           "shows where the model would look for it, not a finding.")
        share, energy_note = reading.lung_share(cam_map), ""
        if share is not None and share == share:
            energy_note = f"{share:.0%} of this map's energy lies inside the lungs."
            column.caption(energy_note)
            if share < LOW_LUNG_SHARE:
                column.warning("The model looked mostly outside the lungs: do not trust this map or its class.")
    audit_heatmap(reading, predictor, settings.method, CLASSES[shown[0]],
                  reading.lung_share(cam(reading, predictor, settings, shown[0])))
    notes = [_region_note(reading, lungs_shown is not None)]
    if settings.method in CLASS_AGNOSTIC:
        notes.append("EigenCAM ignores the class: every class gets the same map.")
    if settings.method != FAST_METHOD or settings.scale == SCALES[0]:
        notes.append("Each map is stretched to its own full range: read it together with its probability.")
    st.caption(" ".join(n for n in notes if n))
    d1, d2 = st.columns(2)
    # Files are built when clicked (Streamlit runs the callable then), not on every rerun: the first heatmap
    # does not wait for them, and no session holds encoded copies it may never download.
    d1.download_button("Overlay (PNG)", lambda: png_bytes(overlay_rgb), file_name=f"{reading.name}.overlay.png",
                       mime="image/png", key=f"png{index}", on_click="ignore")
    note = " ".join(n for n in (energy_note, _region_note(reading, lungs_shown is not None)) if n)
    d2.download_button("Case report (HTML)", lambda: case_report_html(
        reading, overlay_rgb, title, predictor.sidecar["name"], predictor.version,
        reading.verdict(predictor), overlay_note=note).encode(),
                       file_name=f"{reading.name}.report.html", mime="text/html", key=f"html{index}",
                       on_click="ignore")


def _show_image(column, image: np.ndarray, title: str, width: int, zoom: bool, key: str) -> None:
    """A plain image by default; a zoomable plotly figure only when the user asked for zoom (plotly.js
    loads on first use, seconds in a fresh browser)."""
    if zoom:
        column.plotly_chart(zoomable_image(image, title, width), key=key, config=PLOT_CONFIG)
    else:
        # the radiograph lossless; a colour overlay as high-quality JPEG (a fifth of the PNG's size: it reaches
        # the browser sooner, and the downloads stay PNG)
        data = png_bytes(image) if image.ndim == 2 else jpeg_bytes(image)
        column.image(data, caption=title, width="stretch", output_format="PNG" if image.ndim == 2 else "JPEG")


def _region_note(reading: Reading, lung_outline: bool) -> str:
    if reading.read_lung_field:
        return ("The model read only the box around both lungs (dashed), resized to a square; outside it, it saw "
                "nothing." + (" The blue line is the lung segmenter's outline." if lung_outline else ""))
    if not reading.box.covers(reading.xray.pixels.shape):
        return "Outside the dashed box the model saw nothing (it reads the central square after trimming borders)."
    return ""


def summary_table(outcomes: list[tuple[str, Reading | str]], predictor: Predictor) -> pd.DataFrame:
    """One row per upload: label by the model's decision rule (empty, with the reason, where it gives none),
    probabilities, flags or the rejection reason."""
    rows = []
    for name, outcome in outcomes:
        if isinstance(outcome, str):
            rows.append({"file": name, "label": None, "abstained": None, **{f"p_{c}": None for c in CLASSES},
                         "flags": "", "error": outcome})
        else:
            flags = (["out of distribution"] if outcome.is_outlier else ["unlike the training images"]
                     if outcome.is_unusual else []) + list(outcome.xray.warnings)
            label, abstained = outcome.verdict(predictor)
            rows.append({"file": name, "label": label, "abstained": abstained,
                         **{f"p_{c}": round(float(p), 4) for c, p in zip(CLASSES, outcome.probabilities)},
                         "flags": " | ".join(flags), "error": ""})
    return pd.DataFrame(rows)
