"""The sidebar every page shows: model name, short version and the intended-use line."""

from __future__ import annotations

import logging

import streamlit as st

from covidviz import DISCLAIMER
from covidviz.verified import read_sidecar

INTENDED_USE = "Decision support for readers of frontal chest radiographs. Not a diagnosis, not a medical device."


def render_sidebar(weights_dir) -> None:
    try:
        sidecar = read_sidecar(weights_dir)
        st.sidebar.markdown(f"**{sidecar['name']}**  \nversion `{sidecar['weights_sha256'][:12]}`")
    except Exception as exc:  # the page itself reports the problem; the sidebar must still render
        logging.getLogger(__name__).warning("model sidecar unreadable: %s", exc)  # names server paths: log only
        st.sidebar.error("Model unavailable: its sidecar (model.json) is missing or unreadable.")
    st.sidebar.caption(INTENDED_USE)


def disclaimer() -> None:
    """The banner at the top of every page."""
    st.caption(f"⚠️ {DISCLAIMER}")
