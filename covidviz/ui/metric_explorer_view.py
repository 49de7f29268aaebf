"""The metric explorer's view: one class against the rest, at any threshold and prevalence, from weights/eval/.

The decision-rule state machine and the page's prose are pure functions, so they can be read and tested
without Streamlit; the ``render_*`` functions below them draw one section each, in the page's order.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.artifacts import saved
from covidviz.evaluation.measures import operating_point
from covidviz.evaluation.measures.age_groups import pneumonia_recall_by_age, recall_sentence
from covidviz.model.decision import COVID, DecisionRule
from covidviz.text import without_folder
from covidviz.ui import eval_figures

ARGMAX, CUSTOM, DECISION = "argmax", "custom", "decision"
CUSTOM_LABEL = "Custom threshold (slider)"
DEFAULT_THRESHOLD = 0.5
SLIDER_STEP_DECIMALS = 3  # the slider moves in steps of 0.001
THRESHOLD_PRESETS = ("youden", "sens95")

PREVALENCE_HELP = "PPV and NPV depend on it (Bayes' theorem); sensitivity and specificity do not."
TABLE_NOTE = ("Argmax rule: values and 95% bootstrap intervals from metrics.json. ROC AUC and average precision do "
              "not depend on the threshold. Empty cells are undefined, or trivial, for this split.")
NO_CURVES_NOTE = ("ROC and precision-recall curves need both images of the class and images of other classes in the "
                  "split.")
CALIBRATION_NOTE = ("Top-label reliability over all three classes: of the images the model gave about 80% confidence, "
                    "about 80% should be right. The temperature was fitted on the validation split only, so the "
                    "internal test and external rows show whether it transfers. The camera icon on each chart saves "
                    "a PNG.")


# --- the decision rule: pure ------------------------------------------------------------------------------------------


def decision_modes(presets: dict[str, float | None]) -> list[str]:
    """The rules on offer: the model's own (when it is a threshold on this class), argmax for comparison, each
    other preset this split defines, and a custom threshold."""
    own = [DECISION] if presets.get(DECISION) is not None else []
    return [*own, ARGMAX, *(p for p, t in presets.items() if t is not None and p != DECISION), CUSTOM]


def mode_label(mode: str) -> str:
    return operating_point.PRESETS.get(mode, CUSTOM_LABEL)


def sync_decision_state(state: MutableMapping[str, Any], presets: dict[str, float | None]) -> list[str]:
    """Settle ``mode`` and ``threshold`` in the widget state before the widgets draw; return the modes.

    A fresh page, or a mode this split does not offer (a preset undefined here), starts on the model's own rule
    where it is a threshold on this class, else argmax; a preset puts its threshold on the slider, so the slider
    always shows the threshold in use (to the slider's step).
    """
    modes = decision_modes(presets)
    if state.get("mode") not in modes:
        state["mode"] = modes[0]
    if state["mode"] in presets:
        state["threshold"] = round(presets[state["mode"]], SLIDER_STEP_DECIMALS)
    state.setdefault("threshold", DEFAULT_THRESHOLD)
    return modes


def threshold_in_use(mode: str, presets: dict[str, float | None], slider: float) -> float | None:
    """The exact threshold of the rule (a preset's own value, not the slider's rounding); None for argmax."""
    if mode in presets:
        return presets[mode]
    return None if mode == ARGMAX else float(slider)


def argmax_caption(name: str, lowest: float, highest: float) -> str:
    """What the argmax rule means as a threshold on ``p(name)`` on this split, if anything."""
    equivalent = np.isfinite(lowest) and np.isfinite(highest) and lowest > highest
    return (f"The argmax rule calls an image {name} when p({name}) is the largest of the three probabilities "
            "(the numbers in metrics.json and the model card). "
            + (f"Here that equals any threshold in ({highest:.4f}, {lowest:.4f}]." if equivalent else
               f"Here it is no single threshold on p({name}): the lowest p called {name} was {lowest:.4f}, the "
               f"highest not called {name} {highest:.4f}, because the other two probabilities matter too.")
            + " Move the slider or pick a preset to use a threshold instead.")


def threshold_caption(name: str, threshold: float, mode: str) -> str:
    if mode == DECISION:
        return (f"Threshold in use: p({name}) ≥ {threshold:.6f}, the model's decision rule: fitted on the validation "
                "split for COVID-19 sensitivity ≥ 0.90, and used wherever the dashboard shows or writes a class.")
    return f"Threshold in use: p({name}) ≥ {threshold:.6f}" + (
        "." if mode == CUSTOM else f", from the preset “{operating_point.PRESETS[mode]}” on this split.")


def rule_text(cls: str, threshold: float | None) -> str:
    """The rule as written into the CSV download."""
    return ARGMAX if threshold is None else f"p_{cls} >= {threshold:.6f}"


def headline_values(point: operating_point.OperatingPoint, adjusted: tuple[float, float], prevalence: float,
                    shown: tuple[str, ...]) -> dict[str, str]:
    """The five headline numbers as shown: "n/a" where undefined or not meaningful for this split."""
    values = {"Sensitivity": ("sensitivity", point.sensitivity), "Specificity": ("specificity", point.specificity),
              f"PPV at prevalence {prevalence:.4f}": ("ppv", adjusted[0]),
              f"NPV at prevalence {prevalence:.4f}": ("npv", adjusted[1]), "F1 (this split)": ("f1", point.f1)}
    return {label: "n/a" if key not in shown or not np.isfinite(value) else f"{value:.3f}"
            for label, (key, value) in values.items()}


def curve_marks(argmax_point: operating_point.OperatingPoint, point: operating_point.OperatingPoint,
                threshold: float | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ROC and precision-recall markers: the argmax rule, and the current threshold when one is in use."""
    marked = [("argmax rule", argmax_point, "diamond")]
    if threshold is not None:
        marked.append(("current threshold", point, "x"))
    roc = [{"name": n, "fpr": p.fpr, "tpr": p.sensitivity, "symbol": s} for n, p, s in marked]
    pr = [{"name": n, "recall": p.sensitivity, "precision": p.ppv, "symbol": s}
          for n, p, s in marked if np.isfinite(p.ppv)]  # nothing called positive: no precision to mark
    return roc, pr


# --- rendering --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """One split and one class against the rest, with everything the sections below read."""

    split: str
    cls: str
    name: str
    title: str
    predictions: saved.SplitPredictions
    report: dict[str, Any]
    is_positive: np.ndarray
    score: np.ndarray
    positives: int
    negatives: int

    @property
    def k(self) -> int:
        return CLASSES.index(self.cls)

    @property
    def shown(self) -> tuple[str, ...]:
        return operating_point.meaningful_metrics(self.positives, self.negatives)


def render_selection(metrics: dict[str, Any], folder: Path) -> Selection:
    """Split and class pickers; stops the page when the split's predictions cannot be read."""
    left, right = st.columns(2)
    split = left.selectbox("Split", saved.available_splits(metrics), key="split",
                           format_func=lambda s: saved.split_label(metrics, s))
    cls = right.selectbox("Class (one vs rest)", CLASSES, format_func=CLASS_TITLES.get, key="cls")
    try:
        predictions = saved.load_predictions(folder, split)
    except saved.EvalArtifactsError as exc:
        st.warning(without_folder(str(exc), folder))
        st.stop()
    k = CLASSES.index(cls)
    is_positive, score = operating_point.one_vs_rest(predictions.y_true, predictions.probs, k)
    selection = Selection(split, cls, CLASS_TITLES[cls], saved.split_title(metrics, split), predictions,
                          saved.split_report(metrics, split), is_positive, score,
                          *saved.class_presence(predictions.y_true, k))
    note = operating_point.undefined_note(selection.positives, selection.negatives, selection.name, selection.title)
    if note:
        st.warning(note)
    return selection


def render_decision_rule(sel: Selection, rule: DecisionRule) -> tuple[operating_point.OperatingPoint, float | None]:
    """The rule picker and slider; returns the operating point in use and its threshold (None: argmax).
    ``rule`` is the model's (its sidecar's): on COVID-19 it is a threshold, offered first."""
    own = rule.covid_threshold if sel.k == COVID else None
    presets = {DECISION: own, **{p: operating_point.preset_threshold(p, sel.is_positive, sel.score)
                                 for p in THRESHOLD_PRESETS}}
    modes = sync_decision_state(st.session_state, presets)
    st.subheader("Operating point")
    mode = st.radio("Decision rule", modes, key="mode", horizontal=True, format_func=mode_label)
    slider = st.slider(f"Threshold on p({sel.name}): call an image {sel.name} when p ≥ threshold", 0.0, 1.0,
                       step=0.001, format="%.3f", key="threshold",
                       on_change=lambda: st.session_state.update(mode=CUSTOM))
    threshold = threshold_in_use(mode, presets, slider)
    if threshold is None:
        st.caption(argmax_caption(sel.name, *operating_point.argmax_threshold_range(sel.predictions.probs, sel.k)))
        return operating_point.argmax_rule(sel.predictions.y_true, sel.predictions.probs, sel.k), None
    st.caption(threshold_caption(sel.name, threshold, mode))
    return operating_point.at_threshold(sel.is_positive, sel.score, threshold), threshold


def render_metrics(sel: Selection, point: operating_point.OperatingPoint, threshold: float | None) -> None:
    """Prevalence input, headline numbers, the 2 x 2 matrix and the table with its CSV download."""
    prevalence = st.number_input(
        f"Prevalence of {sel.name} in the population you will use it on (default: this split's)", 0.0, 1.0,
        value=float(point.prevalence) if np.isfinite(point.prevalence) else 0.0, step=0.01, format="%.4f",
        key=f"prevalence_{sel.split}_{sel.cls}", disabled=not (sel.positives and sel.negatives), help=PREVALENCE_HELP)
    adjusted = operating_point.adjusted_predictive_values(point.sensitivity, point.specificity, prevalence)
    headline = headline_values(point, adjusted, prevalence, sel.shown)
    for column, (label, text) in zip(st.columns(len(headline)), headline.items()):
        column.metric(label, text)
    matrix_column, table_column = st.columns([2, 3])
    matrix_column.plotly_chart(eval_figures.binary_confusion_figure(point, sel.name), key="binary",
                               config=eval_figures.png_config(f"operating_point_{sel.split}_{sel.cls}"))
    table = eval_figures.metrics_table(sel.report, sel.cls, point, adjusted, prevalence, sel.shown)
    table_column.dataframe(table, hide_index=True,
                           column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns[1:]})
    table_column.caption(TABLE_NOTE)
    if sel.cls == "pneumonia":
        st.markdown(age_recall_line(sel, threshold))
    table_column.download_button("Download this table (CSV)", key="download_csv", mime="text/csv",
                                 file_name=f"covidviz_{sel.split}_{sel.cls}_metrics.csv",
                                 data=table.assign(**{"split": sel.split, "class": sel.cls,
                                                      "rule": rule_text(sel.cls, threshold),
                                                      "prevalence": prevalence}).to_csv(index=False))


def age_recall_line(sel: Selection, threshold: float | None) -> str:
    """Pneumonia recall for adults and children apart at the operating point in use (None: argmax)."""
    probs = sel.predictions.probs
    called = probs.argmax(axis=1) == sel.k if threshold is None else sel.score >= threshold
    return recall_sentence(pneumonia_recall_by_age(sel.predictions.sources, sel.predictions.y_true,
                                                   np.where(called, sel.k, -1)))


def render_curves(sel: Selection, point: operating_point.OperatingPoint, threshold: float | None) -> None:
    """ROC and precision-recall curves with the rules marked, where both positives and negatives exist."""
    if not (sel.positives and sel.negatives):
        st.info(NO_CURVES_NOTE)
        return
    curve = operating_point.curves(sel.is_positive, sel.score)
    roc_marks, pr_marks = curve_marks(operating_point.argmax_rule(sel.predictions.y_true, sel.predictions.probs, sel.k), point,
                                      threshold)
    roc_column, pr_column = st.columns(2)
    auc = saved.metric_value(sel.report, sel.cls, "roc_auc")[0]
    ap = saved.metric_value(sel.report, sel.cls, "average_precision")[0]
    roc_column.plotly_chart(eval_figures.roc_figure(curve, roc_marks, auc, sel.name), key="roc",
                            config=eval_figures.png_config(f"roc_{sel.split}_{sel.cls}"))
    pr_column.plotly_chart(eval_figures.pr_figure(curve, pr_marks, ap, point.prevalence, sel.name), key="pr",
                           config=eval_figures.png_config(f"pr_{sel.split}_{sel.cls}"))


def render_calibration(metrics: dict[str, Any], sel: Selection) -> None:
    st.subheader("Calibration")
    calibration = metrics["splits"][sel.split].get("calibration")
    if not calibration:
        st.info("metrics.json has no calibration results for this split.")
        return
    st.plotly_chart(eval_figures.reliability_figure(calibration, metrics.get("temperature"), sel.title), key="reliability",
                    config=eval_figures.png_config(f"reliability_{sel.split}"))
    st.caption(CALIBRATION_NOTE)
