"""Diagnose: minimal until the full page lands: the model loads and says it is ready."""

import streamlit as st

from covidviz.errors import WeightsError
from covidviz.ui.resources import get_predictor
from covidviz.ui.sidebar import disclaimer

st.title("Diagnose")
disclaimer()
try:
    predictor = get_predictor()
except WeightsError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()
st.success(f"Model ready: {predictor.sidecar['name']}, input {predictor.input_size} px, version {predictor.version}.")
