"""Confusion matrices per split and source, read from weights/eval/metrics.json (the model never runs here)."""

import numpy as np
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.artifacts import saved
from covidviz.model.decision import rule_from_sidecar
from covidviz.ui import confusion_view, eval_figures
from covidviz.ui.eval_page import start_eval_page
from covidviz.ui.resources import weights_dir
from covidviz.verified import read_sidecar

metrics = start_eval_page("Confusion matrices")

left, middle, right = st.columns([2, 3, 2])
split = left.selectbox("Split", saved.available_splits(metrics), format_func=lambda s: saved.split_label(metrics, s),
                       key="confusion_split")
view = middle.radio("View", list(eval_figures.VIEWS), format_func=eval_figures.VIEWS.get, key="confusion_view", horizontal=True)
sources = saved.sources_of(metrics, split)
source = right.selectbox("Source", ["all", *sources], format_func=lambda s: "All sources" if s == "all" else s,
                         key=f"source_{split}")
title = saved.split_title(metrics, split)
report = saved.split_report(metrics, split, None if source == "all" else source)
model_rule = rule_from_sidecar(read_sidecar(weights_dir()))
rule = st.radio("Decision rule", confusion_view.rule_options(model_rule), format_func=confusion_view.RULES.get,
                key="confusion_rule", horizontal=True)
st.caption(confusion_view.RULE_CAPTIONS[rule].format(rule=model_rule.description))
predictions = saved.load_predictions(weights_dir(), split)
matrix = (np.array(report["confusion_matrix"]) if rule == "argmax" else
          confusion_view.rule_confusion(predictions, model_rule, None if source == "all" else source))

figure = eval_figures.confusion_figure(matrix, view,
                             f"{saved.split_label(metrics, split)} · {'all sources' if source == 'all' else source}")
st.plotly_chart(figure, config=eval_figures.png_config(f"confusion_{split}_{source}_{view}"), key="confusion")
st.caption(confusion_view.VIEW_CAPTIONS[view] + " The camera icon above the chart saves it as a PNG.")
by_age = confusion_view.age_recall_caption(predictions, model_rule if rule == "decision" else None,
                                          None if source == "all" else source)
if by_age:
    st.markdown(by_age)

st.subheader(f"By source: {title}")
table = eval_figures.per_source_table(metrics["splits"][split])
number = st.column_config.NumberColumn(format="%.3f")
st.dataframe(table, hide_index=True,
             column_config={c: number for c in table.columns if c == "accuracy" or c.startswith(("recall", "precision"))
                            or c == "macro F1"})
st.caption("Recall of a class that a source does not contain, or precision of a class never predicted, is left "
           "empty: it is undefined, not zero. 95% intervals are percentile bootstraps over images.")

st.subheader("Why every number is split by source")
st.markdown(confusion_view.CONFOUNDING)
if split == "external":
    st.info(confusion_view.EXTERNAL_NOTE)
else:
    mix = {s: [CLASS_TITLES[c] for c in CLASSES if metrics["splits"][split]["by_source"][s]["class_counts"][c]]
           for s in sources}
    st.caption("Classes each source contributes to this split: "
               + "; ".join(f"**{s}**: {', '.join(names) or 'none'}" for s, names in mix.items()) + ".")

if "reads_the_lungs" in metrics:
    st.subheader("Does it read the lungs? This model and the previous one, on the same rows")
    st.markdown(confusion_view.comparison_markdown(metrics))
