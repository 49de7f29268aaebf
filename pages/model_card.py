"""Placeholder until the evaluation pages land."""

import streamlit as st

from covidviz.ui.sidebar import disclaimer

disclaimer()
st.info("This page is being built.")
