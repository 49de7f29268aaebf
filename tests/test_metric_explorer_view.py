"""The metric explorer's decision-rule state machine and captions, without Streamlit."""

from __future__ import annotations

import numpy as np

from covidviz.ui import metric_explorer_view as view

PRESETS = {"youden": 0.61234, "sens95": None}  # sens95 undefined on this split


def test_a_fresh_page_starts_on_argmax_with_the_slider_at_one_half():
    state: dict = {}
    assert view.sync_decision_state(state, PRESETS) == ["argmax", "youden", "custom"]
    assert state == {"mode": "argmax", "threshold": 0.5}
    assert view.threshold_in_use("argmax", PRESETS, 0.5) is None


def test_a_preset_puts_its_threshold_on_the_slider_but_uses_its_exact_value():
    state = {"mode": "youden", "threshold": 0.2}
    view.sync_decision_state(state, PRESETS)
    assert state["threshold"] == 0.612  # the slider's step
    assert view.threshold_in_use("youden", PRESETS, state["threshold"]) == 0.61234


def test_a_preset_this_split_lacks_falls_back_to_argmax_and_custom_keeps_the_slider():
    state = {"mode": "sens95", "threshold": 0.3}
    view.sync_decision_state(state, PRESETS)
    assert state == {"mode": "argmax", "threshold": 0.3}
    state = {"mode": "custom", "threshold": 0.3}
    view.sync_decision_state(state, PRESETS)
    assert state["mode"] == "custom" and view.threshold_in_use("custom", PRESETS, 0.3) == 0.3


def test_argmax_caption_names_the_equivalent_threshold_interval_only_when_there_is_one():
    assert "any threshold in (0.3000, 0.4000]" in view.argmax_caption("COVID-19", 0.4, 0.3)
    assert "no single threshold" in view.argmax_caption("COVID-19", 0.4, 0.45)
    assert "no single threshold" in view.argmax_caption("COVID-19", float("nan"), 0.3)
    assert view.rule_text("covid", None) == "argmax" and view.rule_text("covid", 0.5) == "p_covid >= 0.500000"


def test_headline_shows_na_for_metrics_this_split_cannot_define():
    from covidviz.evaluation.measures.operating_point import at_threshold

    point = at_threshold(np.zeros(4, bool), np.array([0.1, 0.2, 0.7, 0.9]), 0.5)  # no positives: tn 2, fp 2
    shown = view.headline_values(point, (np.nan, 1.0), 0.0, ("specificity",))
    assert shown == {"Sensitivity": "n/a", "Specificity": "0.500", "PPV at prevalence 0.0000": "n/a",
                     "NPV at prevalence 0.0000": "n/a", "F1 (this split)": "n/a"}
