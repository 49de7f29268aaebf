"""Plotly figures for the Diagnose page: probability bars and zoomable images."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from covidviz import CLASS_TITLES, CLASSES
from covidviz.io.images import data_uri

PREDICTED_COLOUR, OTHER_COLOUR = "#b91c1c", "#9ca3af"


def probability_bars(probabilities: np.ndarray, muted: bool = False) -> go.Figure:
    """Horizontal bars, predicted class highlighted (gray for all when the prediction is not meaningful)."""
    top = int(np.argmax(probabilities))
    colours = [OTHER_COLOUR if muted or k != top else PREDICTED_COLOUR for k in range(len(CLASSES))]
    fig = go.Figure(go.Bar(
        x=[float(p) for p in probabilities], y=[CLASS_TITLES[c] for c in CLASSES], orientation="h",
        marker_color=colours, text=[f"{p:.1%}" for p in probabilities], textposition="outside", cliponaxis=False))
    fig.update_layout(height=170, margin=dict(l=10, r=40, t=10, b=10), xaxis=dict(range=[0, 1.08], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), showlegend=False)
    return fig


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
