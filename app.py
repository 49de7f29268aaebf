"""covidviz dashboard: navigation and the shared sidebar. Each page lives in pages/ and stays thin."""

from __future__ import annotations

import streamlit as st

from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import render_sidebar

# Explicit url_paths, unlike the file names on purpose: a fresh Streamlit server routes its very first run
# through the legacy pages/ folder, where a deep link such as /error_gallery would bypass this script (no
# sidebar, no layout). /error-gallery matches no legacy page, so this script runs and routes it itself.
st.set_page_config(page_title="covidviz", page_icon=":material/radiology:", layout="wide")

navigation = st.navigation({
    "Read an X-ray": [st.Page("pages/diagnose.py", title="Diagnose", icon=":material/radiology:", default=True)],
    "Evaluation": [
        st.Page("pages/confusion_matrices.py", title="Confusion matrices", url_path="confusion-matrices", icon=":material/grid_on:"),
        st.Page("pages/metric_explorer.py", title="Metric explorer", url_path="metric-explorer", icon=":material/monitoring:"),
        st.Page("pages/error_gallery.py", title="Error gallery", url_path="error-gallery", icon=":material/photo_library:"),
        st.Page("pages/explanation_quality.py", title="Explanation quality", url_path="explanation-quality", icon=":material/fact_check:"),
        st.Page("pages/model_comparison.py", title="Model comparison", url_path="model-comparison", icon=":material/compare:"),
    ],
    "Hospital": [st.Page("pages/pacs_worklist.py", title="PACS worklist", url_path="pacs-worklist",
                         icon=":material/lan:")],
    "Operations": [st.Page("pages/audit.py", title="Audit log", url_path="audit", icon=":material/history:"),
                   st.Page("pages/site_performance.py", title="Site performance", url_path="site-performance", icon=":material/verified:")],
    "About": [st.Page("pages/model_card.py", title="About / model card", url_path="model-card", icon=":material/description:")],
})
render_sidebar(weights_dir())
navigation.run()
