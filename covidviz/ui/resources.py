"""Process-wide cached resources: the model is loaded and verified once per server process, not per rerun.

torch and the model are imported inside the loaders, so pages that never run the model (the evaluation
pages, and the Diagnose page before the first upload) render without paying for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from covidviz.sidecar import DEFAULT_WEIGHTS_DIR

if TYPE_CHECKING:
    from covidviz.ood import OodGuard
    from covidviz.predictor import Predictor


def weights_dir() -> Path:
    """``COVIDVIZ_WEIGHTS`` overrides the shipped ``weights/`` folder (for a retrained model)."""
    return Path(os.environ.get("COVIDVIZ_WEIGHTS", DEFAULT_WEIGHTS_DIR))


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor() -> Predictor:
    from covidviz.predictor import Predictor
    return Predictor(weights_dir())


@st.cache_resource(show_spinner=False)
def get_guard() -> OodGuard | None:
    """The out-of-distribution guard fitted by ``evaluate`` (None if this weights folder has none)."""
    from covidviz.ood import load_guard
    return load_guard(weights_dir())


def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))
