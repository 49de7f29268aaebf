"""The key to the heatmaps' colours, shown under the controls on Diagnose.

It is also what lets a fresh browser show the first reading sooner: the page's image and HTML components are
code-split scripts that a browser fetches the first time the page uses them. Drawn here, before any upload,
they arrive while the person is choosing a file (as the server's own warm-up does), not after the verdict.
"""

from __future__ import annotations

import streamlit as st

from covidviz.explain.overlay import colour_strip
from covidviz.io.images import png_bytes


@st.cache_data(show_spinner=False, max_entries=8)
def _strip_png(colormap: str) -> bytes:
    return png_bytes(colour_strip(colormap))


def colour_scale(colormap: str, style: str) -> None:
    """The chosen colormap as a strip labelled from low to high (for contours: the colour of the outline)."""
    left, _ = st.columns([1, 2])
    left.image(_strip_png(colormap), width="stretch")
    left.markdown(  # fixed text only: nothing a user typed goes into this HTML
        '<div style="display:flex;justify-content:space-between;font-size:.8rem;color:#6b7280;margin-top:-.9rem">'
        '<span>low</span><span>high</span></div>', unsafe_allow_html=True)
    left.caption("Contour colour: the outline marks where the map reaches the threshold." if style == "contour" else
                 "Heatmap colours: from the map's lowest value to its highest (brightest: where the method found most "
                 "for the class; EigenCAM ignores the class).")
