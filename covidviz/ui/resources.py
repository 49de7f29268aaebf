"""Process-wide cached resources: the model is loaded and verified once per server process, not per rerun."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from covidviz.ood import OodGuard, load_guard
from covidviz.predictor import Predictor
from covidviz.weights_io import DEFAULT_WEIGHTS_DIR


def weights_dir() -> Path:
    """``COVIDVIZ_WEIGHTS`` overrides the shipped ``weights/`` folder (for a retrained model)."""
    return Path(os.environ.get("COVIDVIZ_WEIGHTS", DEFAULT_WEIGHTS_DIR))


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor() -> Predictor:
    return Predictor(weights_dir())


@st.cache_resource(show_spinner=False)
def get_guard() -> OodGuard | None:
    """The out-of-distribution guard fitted by ``evaluate`` (None if this weights folder has none)."""
    return load_guard(weights_dir())


def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))
