"""Error gallery: misclassified internal-test images with the Grad-CAM overlay for the predicted class."""

import streamlit as st

from covidviz.ui.gallery_view import gallery_items, render_gallery
from covidviz.ui.sidebar import disclaimer

st.title("Error gallery")
disclaimer()
items, origin = gallery_items()
st.caption(origin)
if not items:
    st.info("No misclassified images to show: run `python -m covidviz evaluate` to build the gallery.")
    st.stop()
render_gallery(items)
