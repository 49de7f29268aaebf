"""Site performance: how the model does here, by readers' verdicts, beside the shipped evaluation; drift."""

import streamlit as st

from covidviz.ui.resources import weights_dir
from covidviz.ui.site_view import render_site_performance

st.title("Site performance")
render_site_performance(weights_dir())
