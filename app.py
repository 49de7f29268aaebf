"""covidviz dashboard entry point: loads the shipped model once and says whether it is ready."""

from __future__ import annotations

import streamlit as st

from covidviz import DISCLAIMER
from covidviz.errors import WeightsError
from covidviz.predictor import Predictor

st.set_page_config(page_title="covidviz", page_icon="🫁", layout="wide")


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor() -> Predictor:
    return Predictor()


st.title("covidviz: chest X-ray screening support")
st.warning(DISCLAIMER)
try:
    predictor = get_predictor()
except WeightsError as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()
sidecar = predictor.sidecar
st.sidebar.markdown(f"**{sidecar['name']}**  \nversion `{predictor.version}`")
st.sidebar.caption("Decision support for readers of chest radiographs; not a diagnosis.")
st.success(f"Model ready: {sidecar['name']}, input {predictor.input_size} px, "
           f"temperature {predictor.temperature:.2f}, weights sha256 {predictor.version}…")
st.write("Classes: COVID-19, pneumonia (not COVID), normal. The Diagnose and evaluation pages are on their way.")
