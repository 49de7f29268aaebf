"""PACS worklist: studies from the hospital's DICOMweb server with the model's scores; open any in Diagnose,
store results back. The server is set in the environment (COVIDVIZ_DICOMWEB_URL)."""

import streamlit as st

from covidviz.ui.pacs_view import render_worklist
from covidviz.ui.sidebar import disclaimer

st.title("PACS worklist")
disclaimer()
render_worklist()
