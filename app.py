"""covidviz dashboard: navigation and the shared sidebar. Each page lives in pages/ and stays thin."""

from __future__ import annotations

import streamlit as st

from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import render_sidebar

st.set_page_config(page_title="covidviz", page_icon=":material/radiology:", layout="wide")

navigation = st.navigation({
    "Read an X-ray": [st.Page("pages/diagnose.py", title="Diagnose", icon=":material/radiology:", default=True)],
    "Evaluation": [
        st.Page("pages/confusion_matrices.py", title="Confusion matrices", icon=":material/grid_on:"),
        st.Page("pages/metric_explorer.py", title="Metric explorer", icon=":material/monitoring:"),
        st.Page("pages/error_gallery.py", title="Error gallery", icon=":material/photo_library:"),
    ],
    "About": [st.Page("pages/model_card.py", title="About / model card", icon=":material/description:")],
})
render_sidebar(weights_dir())
navigation.run()
