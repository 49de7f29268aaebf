"""The start every evaluation page shares: banner, title, and the metrics (or a clear stop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from covidviz.errors import WeightsError
from covidviz.evaluation.artifacts import saved
from covidviz.text import without_folder
from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import disclaimer
from covidviz.verified import read_sidecar


def start_artifact_page(title: str, load: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Render the banner and title; return the artifact ``load`` reads from the weights folder, or stop the page
    with a warning that says how to make it (server paths left out)."""
    st.title(title)
    disclaimer()
    folder = weights_dir()
    try:
        return load(folder)
    except saved.EvalArtifactsError as exc:
        st.warning(without_folder(str(exc), folder))
        st.stop()


def start_eval_page(title: str) -> dict[str, Any]:
    """Render the banner and title; return metrics.json, warning when it belongs to other weights."""
    metrics = start_artifact_page(title, saved.load_metrics)
    folder = weights_dir()
    try:
        stale = saved.stale_warning(metrics.get("weights_sha256"), read_sidecar(folder).get("weights_sha256"))
    except WeightsError:
        stale = None
    if stale:
        st.warning(stale)
    return metrics
