"""The Diagnose page's heatmap controls. Light on purpose: it renders before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.explain.cam.methods import FAST_METHOD, METHODS, SCALES, SLOW_METHODS, time_estimate
from covidviz.explain.overlay import COLORMAPS

if TYPE_CHECKING:
    from covidviz.explain.reading import Reading
    from covidviz.model.decision import DecisionRule

VIEWS = ("Predicted class", *(CLASS_TITLES[c] for c in CLASSES), "All three side by side")


@dataclass(frozen=True)
class Settings:
    method: str
    view: str
    scale: str
    style: str
    colormap: str
    opacity: float
    threshold: float
    lung_outline: bool = True
    zoom: bool = False


def classes_to_show(reading: Reading, view: str, rule: DecisionRule) -> list[int]:
    """The class indices whose maps the chosen view shows: the one the decision rule picks (``rule``, the
    predictor's ``decision``), one chosen class, or all."""
    if view == VIEWS[0]:
        return [int(rule.indices(reading.probabilities)[0])]
    if view == VIEWS[-1]:
        return list(range(len(CLASSES)))
    return [VIEWS.index(view) - 1]


def verdict_help(folder: Path) -> str:
    """Every method's explain-check verdict for the picker's help text (cached until the file changes)."""
    from covidviz.errors import WeightsError
    from covidviz.evaluation.explanation_check.explanations import explanations_path
    from covidviz.verified import read_sidecar
    path = explanations_path(folder)
    try:
        sha = read_sidecar(folder)["weights_sha256"]
    except (WeightsError, KeyError):
        sha = None
    return _verdict_help(str(folder), path.stat().st_mtime if path.is_file() else None, sha)


@st.cache_data(show_spinner=False)
def _verdict_help(folder: str, mtime: float | None, weights_sha256: str | None) -> str:
    from covidviz.evaluation.explanation_check.explanations import (
        HOW_TO_MAKE,
        ExplanationsError,
        load_explanations,
        method_help,
    )
    if mtime is None:
        return "\n\nThe explanation check has not been run for this model (`python -m covidviz explain-check`)."
    try:
        report = load_explanations(folder)
    except ExplanationsError as exc:
        return f"\n\n{exc}"
    from covidviz.evaluation.artifacts.saved import stale_warning
    stale = stale_warning(report.get("weights_sha256"), weights_sha256, HOW_TO_MAKE)
    return ("\n\nExplanation check (the Explanation quality page has the details)"
            + (f". {stale}" if stale else "") + ":\n" + "\n".join(f"- {method_help(report, m)}" for m in METHODS))


def slow_estimate(method: str, folder: Path) -> str:
    """:func:`time_estimate` for the model in ``folder`` (its sidecar's architecture and input size)."""
    try:
        from covidviz.verified import read_sidecar
        sidecar = read_sidecar(folder)
        return time_estimate(method, sidecar.get("architecture", "densenet121"), int(sidecar["input_size"]))
    except Exception:  # the page reports a missing model itself; the estimate must not break the controls
        return time_estimate(method)


def settings_panel(folder: Path) -> Settings:
    """The heatmap controls, in one row above the results; estimates and check verdicts for the model in
    ``folder`` (the one picked on the page)."""
    c1, c2, c3 = st.columns([2, 3, 2])
    method = c1.selectbox("CAM method", list(METHODS), key="method",
                          help="Grad-CAM comes with the prediction at no extra cost; the others take up to a second. "
                               f"Score-CAM runs a forward pass per feature channel: {slow_estimate('Score-CAM', folder)}."
                               + verdict_help(folder))
    view = c2.radio("Heatmap for", VIEWS, key="diagnose_view", horizontal=True)
    scale = c3.radio("Scale", SCALES, key="scale", disabled=method != FAST_METHOD,
                     help="Per map: each map stretched to its own full range (pytorch-grad-cam's convention). "
                          "Shared: the three classes of an image on one scale, so a weak class looks weak.")
    c4, c5, c6, c7 = st.columns(4)
    style = c4.radio("Overlay", ("heatmap", "contour"), key="style", horizontal=True)
    colormap = c5.selectbox("Colormap", list(COLORMAPS), key="colormap")
    opacity = c6.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="opacity", disabled=style == "contour")
    threshold = c7.slider("Threshold", 0.0, 0.95, 0.5 if style == "contour" else 0.0, 0.05, key="diagnose_threshold",
                          help="Heatmap: hide values below it. Contour: outline the region at or above it.")
    c8, c9 = st.columns(2)
    lung_outline = c8.checkbox("Outline the lungs", value=True, key="lung_outline",
                               help="The lung segmenter's outline: the model reads the box around it.")
    zoom = c9.toggle("Interactive zoom", value=False, key="zoom",
                     help="Box zoom and pan on every image (double-click resets). Off, the images show at once; "
                          "on, the zoom component loads first (a few seconds the first time in a browser).")
    if method in SLOW_METHODS:
        st.info(f"{method} is slow here ({slow_estimate(method, folder)}). A progress bar shows how far "
                "it is; change any control or upload to cancel it.")
    return Settings(method, view, scale, style, COLORMAPS[colormap], opacity, threshold, lung_outline, zoom)
