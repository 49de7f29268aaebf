"""Model comparison: backbones on one recipe and one split, with uncertainty, and the cross-validation of the
DenseNet-121; read from weights/comparison/comparison.json (no model runs here)."""

import numpy as np
import streamlit as st

from covidviz import CLASS_TITLES
from covidviz.errors import WeightsError
from covidviz.evaluation.artifacts import saved
from covidviz.ui import comparison_view, eval_figures
from covidviz.ui.eval_page import start_artifact_page
from covidviz.ui.resources import weights_dir
from covidviz.verified import read_sidecar

report = start_artifact_page("Model comparison", saved.load_comparison)
try:
    stale = saved.stale_warning(saved.comparison_built_for(report), read_sidecar(weights_dir()).get("weights_sha256"),
                               saved.COMPARISON_REBUILD)
except WeightsError:  # no shipped sidecar to compare with: the comparison itself still reads
    stale = None
if stale:
    st.warning(stale)

st.info(comparison_view.reduced_note(report))
split = st.radio("Evaluated on", list(comparison_view.SPLIT_NAMES), format_func=comparison_view.SPLIT_NAMES.get, horizontal=True,
                 key="comparison_split")

st.subheader("Every model, the same images")
st.dataframe(comparison_view.comparison_table(report, split), hide_index=True, key="comparison_table")
boot = report["paired_bootstrap"]
machine = report["machine"]
st.caption(f"95% intervals: percentile bootstrap over images. Δ macro-F1: the model's macro-F1 minus the shipped "
           f"model's on the images both scored, with a paired bootstrap ({boot['resamples']:,} resamples, both "
           f"models scored on every resample); an interval that excludes 0 is a difference this test set can see. "
           f"Macro-F1 averages the classes present (the external sets hold no pneumonia). Latency and throughput: "
           f"{machine['engine']}, {machine['threads']} threads on this server's CPU ({machine['cpu']}), timed in one "
           f"run, {machine.get('timing', 'interleaved')}. Weights are committed when under {report['weights_limit_mb']:.0f} MB at fp16; "
           f"committed comparison models can be chosen on Diagnose.")

st.subheader("Confusion matrices")
view = st.radio("View", list(eval_figures.VIEWS), format_func=eval_figures.VIEWS.get, key="comparison_view", horizontal=True)
models = report["models"]
for start in range(0, len(models), 3):
    columns = st.columns(3)
    for column, m in zip(columns, models[start:start + 3]):
        figure = eval_figures.confusion_figure(np.array(m["confusion"][split]), view, m["title"])
        column.plotly_chart(figure, config=eval_figures.png_config(f"confusion_{m['id']}_{split}"), key=f"cm_{m['id']}")

st.subheader("ROC curves")
classes = comparison_view.roc_classes(report, split)
if classes:
    cls = st.selectbox("Class", classes, format_func=CLASS_TITLES.get, key=f"comparison_roc_class_{split}")
    st.plotly_chart(comparison_view.roc_overlay(report, split, cls), config=eval_figures.png_config(f"roc_{cls}_{split}"),
                    key="roc_overlay")
    st.caption("Each curve is stored at 101 false-positive rates (0, 0.01, …, 1); the AUC in the legend is computed "
               "from every prediction, with its 95% interval.")
else:
    st.caption("No ROC curve on this split: it holds a single class, so there are no negatives to rank against.")

st.subheader("Cross-validation of the DenseNet-121")
cv = report.get("cross_validation")
if not cv:
    st.warning(f"No cross-validation folds yet: {saved.COMPARISON_HOW_TO_MAKE}.")
else:
    st.markdown(f"{cv['n_folds']}-fold cross-validation over the pool, grouped by patient ({cv['grouping']}), "
                f"each fold trained on the {cv['recipe']} and tested on its held-out patients. A single split "
                f"hides this spread: it is how much the same recipe's results move with the patients it meets.")
    if cv["finished"] < cv["n_folds"]:
        st.warning(f"Only {cv['finished']} of {cv['n_folds']} folds have finished; the summary covers those.")
    held_out, external = st.columns(2)
    held_out.markdown("**Held-out patients of each fold**")
    held_out.dataframe(comparison_view.crossval_table(cv, "test"), hide_index=True, key="cv_test")
    external.markdown("**External sets, each fold's model**")
    external.dataframe(comparison_view.crossval_table(cv, "external"), hide_index=True, key="cv_external")
    st.caption("SD: sample standard deviation over folds. Specificity on the external sets is on Shenzhen's "
               "normal films, sensitivity on Hannover's COVID-19 films.")
