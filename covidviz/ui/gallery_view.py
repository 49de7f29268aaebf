"""Streamlit rendering of the error gallery (committed overlays, or live from a local data folder)."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.artifacts.gallery import GalleryItem, misclassified, overlay_pair, read_gallery_index
from covidviz.model.decision import rule_from_sidecar
from covidviz.text import plain
from covidviz.ui.resources import get_predictor, weights_dir
from covidviz.verified import read_sidecar

PER_PAGE = 12


def data_dir() -> Path | None:
    """``COVIDVIZ_DATA`` points at a local copy of the collection (with metadata.csv)."""
    value = os.environ.get("COVIDVIZ_DATA")
    return Path(value) if value and (Path(value) / "metadata.csv").is_file() else None


def gallery_items() -> tuple[list[GalleryItem], str]:
    """Every test error when a data folder is set, else the committed (licence-cleared) ones."""
    predictions = weights_dir() / "eval" / "test_predictions.csv"
    folder = data_dir()
    if folder is not None and predictions.is_file():
        errors = misclassified(predictions, rule_from_sidecar(read_sidecar(weights_dir())))
        present = [i for i in errors if (folder / i.file).is_file()]
        gone = len(errors) - len(present)
        note = f" {gone} listed errors are no longer in that folder and are skipped." if gone else ""
        return present, f"All internal-test errors, read from {folder} (COVIDVIZ_DATA).{note}"
    rows = read_gallery_index(weights_dir())
    items = [GalleryItem(r["file"], r["source"], r["true"], r["predicted"], {c: float(r[f"p_{c}"]) for c in CLASSES})
             for r in rows]
    return items, ("Internal-test errors whose licence allows redistribution (NIH, Kermany). Set COVIDVIZ_DATA to "
                   "a local copy of the data folder to see every error, COVID-19 figures from publications included.")


def render_gallery(items: list[GalleryItem]) -> None:
    c1, c2, c3 = st.columns(3)
    order = c1.radio("Sort by confidence", ("most confident first", "least confident first"), key="order",
                     horizontal=True)
    true_filter = c2.multiselect("True class", CLASSES, default=list(CLASSES), key="true_filter",
                                 format_func=CLASS_TITLES.get)
    sources = sorted({i.source for i in items})
    source_filter = c3.multiselect("Source", sources, default=sources, key="source_filter")
    chosen = [i for i in items if i.true in true_filter and i.source in source_filter]
    chosen.sort(key=lambda i: i.confidence, reverse=order.startswith("most"))
    pages = max(1, -(-len(chosen) // PER_PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="gallery_page") if pages > 1 else 1
    st.write(f"{len(chosen)} misclassified images.")
    for item in chosen[(page - 1) * PER_PAGE: page * PER_PAGE]:
        _card(item)


def _card(item: GalleryItem) -> None:
    probs = " · ".join(f"{CLASS_TITLES[c]} {item.probabilities[c]:.1%}" for c in CLASSES)
    text, left, right = st.columns(3)
    text.markdown(f"**{plain(Path(item.file).name)}** ({plain(item.source)}): true **{CLASS_TITLES[item.true]}**, predicted "
                  f"**{CLASS_TITLES[item.predicted]}** ({item.confidence:.1%})  \n{probs}")
    folder = data_dir()
    if folder is not None:
        image, overlay = overlay_pair(get_predictor(weights_dir()), folder / item.file, item.predicted)
    else:
        stem = Path(item.file).stem
        base = weights_dir() / "eval" / "gallery"
        image, overlay = str(base / f"{stem}.png"), str(base / f"{stem}.overlay.png")
    left.image(image, caption="What the model saw", width="stretch")
    right.image(overlay, caption=f"Grad-CAM, predicted class {CLASS_TITLES[item.predicted]} "
                                 f"(p = {item.confidence:.1%})", width="stretch")
    st.divider()
