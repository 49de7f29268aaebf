"""Figures for the Diagnose page: probability bars as plain HTML, and zoomable plotly images on request.

The page draws no plotly chart unless the user asks to zoom: plotly.js is a multi-megabyte download, and a
fresh browser would wait for it before showing the first heatmap."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from covidviz import CLASS_TITLES, CLASSES
from covidviz.io.images import data_uri

PREDICTED_COLOUR, OTHER_COLOUR = "#b91c1c", "#9ca3af"


def probability_bars(probabilities: np.ndarray, muted: bool = False, chosen: int | None = None) -> str:
    """Horizontal bars as HTML (no script), the class the decision rule chose (``chosen``; default the most
    probable) highlighted; all gray when no class is given. Only class titles from the code and numbers go in:
    nothing a user typed."""
    top = int(np.argmax(probabilities)) if chosen is None else chosen
    rows = []
    for k, c in enumerate(CLASSES):
        p = float(probabilities[k])
        colour = OTHER_COLOUR if muted or k != top else PREDICTED_COLOUR
        weight = "600" if k == top and not muted else "400"
        rows.append(
            f'<div style="display:flex;align-items:center;gap:.5rem;margin:.25rem 0" data-class="{c}">'
            f'<span style="width:11rem;text-align:right;font-weight:{weight}">{CLASS_TITLES[c]}</span>'
            f'<span style="flex:1;background:#f3f4f6;border-radius:3px;height:1.1rem">'
            f'<span style="display:block;width:{p:.2%};min-width:2px;height:100%;background:{colour};'
            f'border-radius:3px"></span></span><span style="width:3.8rem">{p:.1%}</span></div>')
    return f'<div role="figure" aria-label="class probabilities">{"".join(rows)}</div>'


def zoomable_image(image: np.ndarray, title: str, width_px: int = 330) -> go.Figure:
    """An image figure the user can zoom and pan (box zoom; double-click resets).

    The pixels travel as a lossless PNG (gray images as 1-channel PNG), several times smaller than
    plotly's pixel array, which is what makes the page fast over a network. ``width_px`` is the
    column width it will get, so the figure is as tall as the image needs."""
    fig = go.Figure(go.Image(source=data_uri(image), hoverinfo="skip"))
    height = 36 + int(width_px * image.shape[0] / max(image.shape[1], 1))
    fig.update_layout(title=dict(text=title, font=dict(size=13)), margin=dict(l=0, r=0, t=32, b=0),
                      height=min(900, height), dragmode="zoom")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig
