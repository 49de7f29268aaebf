"""About / model card: weights/MODEL_CARD.md with the version and weights hash from the sidecar."""

import logging

import streamlit as st

from covidviz import __version__
from covidviz.errors import WeightsError
from covidviz.evaluation.artifacts import saved
from covidviz.evaluation.documents.model_card import render_model_card
from covidviz.text import without_folder
from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import disclaimer
from covidviz.verified import read_sidecar

disclaimer()
folder = weights_dir()
try:
    sidecar = read_sidecar(folder)
except WeightsError as exc:
    sidecar = None
    logging.getLogger("covidviz.ui.model_card").warning("model sidecar unreadable: %s", exc)  # server paths: log only
    st.error("The model sidecar (model.json) could not be read: details in the server's log.")
try:
    metrics = saved.load_metrics(folder)
except saved.EvalArtifactsError as exc:
    metrics = None
    st.warning(f"The card has no results section yet. {without_folder(str(exc), folder)}")

if sidecar:
    sha = str(sidecar.get("weights_sha256", "unknown"))
    version, name, size = st.columns([1, 2, 1])
    version.metric("Model version", sha[:12])
    name.metric("Model", str(sidecar.get("name", "unknown")))
    size.metric("Input size", f"{sidecar.get('input_size', '?')} px")
    st.markdown(f"Weights sha256 `{sha}` · code commit `{sidecar.get('code_commit', 'unknown')}` · "
                f"covidviz {__version__}")
    stale = saved.stale_warning((metrics or {}).get("weights_sha256"), sidecar.get("weights_sha256"))
    if stale:
        st.warning(stale)

card = folder / "MODEL_CARD.md"
if card.is_file():
    st.divider()
    st.markdown(card.read_text(encoding="utf-8"))
elif sidecar:
    try:
        text = render_model_card(sidecar, metrics)
    except (KeyError, TypeError) as exc:
        st.error(f"{without_folder(str(card), folder)} is missing and the sidecar lacks a field needed to render one ({exc}): "
                 "`python -m covidviz evaluate` writes the card.")
    else:
        st.info(f"{without_folder(str(card), folder)} is missing (`python -m covidviz evaluate` writes it); this card is rendered from the "
                + ("sidecar and metrics.json." if metrics else "sidecar only."))
        st.markdown(text)
else:
    st.error(f"No model card at {without_folder(str(card), folder)} and no sidecar to render one from.")
