"""Pneumonia recall for adults and children apart: the measure on hand-made labels (a hand-computed Wilson
interval as the oracle), on the shipped predictions against metrics.json's per-source matrices, and on the pages
and the model card."""

from __future__ import annotations

import math

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from covidviz import CLASSES
from covidviz.evaluation.artifacts import saved
from covidviz.evaluation.measures.age_groups import PAEDIATRIC_SOURCES, pneumonia_recall_by_age, recall_sentence
from tests.conftest import ROOT

pytest_plugins = ["tests.eval_artifacts"]
P, N, C = CLASSES.index("pneumonia"), CLASSES.index("normal"), CLASSES.index("covid")


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_each_age_group_counts_only_its_own_pneumonia_films():
    sources = ["Kermany"] * 4 + ["NIH"] * 3 + ["ieee8023"] * 2 + ["SIIM"] * 2
    y_true = [P, P, P, N, P, P, N, P, C, C, N]
    y_pred = [P, P, N, P, P, C, P, N, P, C, N]
    recalls = pneumonia_recall_by_age(sources, np.array(y_true), np.array(y_pred))
    assert set(recalls) == {"adults", "children"}
    assert (recalls["children"].recalled, recalls["children"].n) == (2, 3)  # the Kermany normal called P is no recall
    assert (recalls["adults"].recalled, recalls["adults"].n) == (1, 3)
    assert recalls["adults"].sources == ("NIH", "ieee8023")  # SIIM holds no pneumonia film
    assert recalls["adults"].ci95 == pytest.approx(wilson(1, 3), abs=1e-9)
    assert "adults (NIH, ieee8023) 1 of 3 (33%" in recall_sentence(recalls)


def test_a_group_without_pneumonia_is_left_out_and_bad_input_is_refused():
    recalls = pneumonia_recall_by_age(["NIH", "Kermany"], np.array([P, N]), np.array([P, P]))
    assert list(recalls) == ["adults"] and recalls["adults"].value == 1.0
    assert recall_sentence({}).startswith("No pneumonia films")
    with pytest.raises(ValueError, match="differ in length"):
        pneumonia_recall_by_age(["NIH"], np.array([P, P]), np.array([P]))


@pytest.mark.parametrize("split", ["val", "test"])
def test_shipped_predictions_agree_with_the_per_source_matrices_of_metrics_json(eval_weights, split):
    metrics = saved.load_metrics(eval_weights)
    if split not in metrics["splits"]:
        pytest.skip(f"no {split} split in these artifacts")
    p = saved.load_predictions(eval_weights, split)
    recalls = pneumonia_recall_by_age(p.sources, p.y_true, p.probs.argmax(1))
    for group, recall in recalls.items():  # metrics.json's argmax matrices per source: an independent count
        rows = [np.array(r["confusion_matrix"])[P] for s, r in metrics["splits"][split]["by_source"].items()
                if (s in PAEDIATRIC_SOURCES) == (group == "children")]
        assert (recall.recalled, recall.n) == (sum(int(r[P]) for r in rows), sum(int(r.sum()) for r in rows))


def test_confusion_page_and_metric_explorer_show_both_groups(eval_weights, monkeypatch):
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(eval_weights))
    st.cache_data.clear()
    p = saved.load_predictions(eval_weights, "test")
    expected = recall_sentence(pneumonia_recall_by_age(p.sources, p.y_true, p.probs.argmax(1)))
    at = AppTest.from_file(str(ROOT / "app_pages" / "confusion_matrices.py"), default_timeout=30)
    at.run(timeout=30)
    at.selectbox(key="confusion_split").set_value("test").run(timeout=30)
    at.radio(key="confusion_rule").set_value("argmax").run(timeout=30)
    assert not at.exception
    assert any(expected in m.value for m in at.markdown)
    at.selectbox(key="source_test").set_value("SIIM").run(timeout=30)  # no pneumonia film: no line
    assert not any("Pneumonia recall by age" in m.value for m in at.markdown)
    explorer = AppTest.from_file(str(ROOT / "app_pages" / "metric_explorer.py"), default_timeout=30)
    explorer.run(timeout=30)
    explorer.selectbox(key="split").set_value("test").run(timeout=30)
    explorer.selectbox(key="cls").set_value("pneumonia").run(timeout=30)
    assert not explorer.exception
    assert any("Pneumonia recall by age group: adults" in m.value for m in explorer.markdown)


def test_the_model_card_tables_both_groups(eval_weights):
    card = (eval_weights / "MODEL_CARD.md").read_text()
    p = saved.load_predictions(eval_weights, "test")
    adults = pneumonia_recall_by_age(p.sources, p.y_true, p.probs.argmax(1))["adults"]
    assert "## Pneumonia recall, adults and children apart" in card
    assert f"| Internal test | argmax | {adults.recalled} of {adults.n} ({adults.value:.3f}" in card
