"""Metric explorer: one class against the rest, at any threshold and prevalence, from weights/eval/ only."""

import numpy as np
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation import artifacts as ed
from covidviz.ui import eval_figures as ef
from covidviz.evaluation import operating_point as op
from covidviz.ui.eval_page import start_eval_page
from covidviz.ui.resources import weights_dir

metrics = start_eval_page("Metric explorer")
folder = weights_dir()

left, right = st.columns(2)
split = left.selectbox("Split", ed.available_splits(metrics), key="split",
                       format_func=lambda s: ed.split_label(metrics, s))
cls = right.selectbox("Class (one vs rest)", CLASSES, format_func=CLASS_TITLES.get, key="cls")
k, name, title = CLASSES.index(cls), CLASS_TITLES[cls], ed.split_title(metrics, split)
try:
    predictions = ed.load_predictions(folder, split)
except ed.EvalArtifactsError as exc:
    st.warning(str(exc))
    st.stop()
report = ed.split_report(metrics, split)
is_positive, score = op.one_vs_rest(predictions.y_true, predictions.probs, k)
positives, negatives = ed.class_presence(predictions.y_true, k)
shown = op.meaningful_metrics(positives, negatives)
note = op.undefined_note(positives, negatives, name, title)
if note:
    st.warning(note)

# --- operating point: a preset or the slider; the slider always shows the threshold in use --------------------------
presets = {p: op.preset_threshold(p, is_positive, score) for p in ("youden", "sens95")}
modes = ["argmax", *(p for p, t in presets.items() if t is not None), "custom"]
if st.session_state.get("mode") not in modes:
    st.session_state["mode"] = "argmax"
if st.session_state["mode"] in presets:
    st.session_state["threshold"] = round(presets[st.session_state["mode"]], 3)
st.session_state.setdefault("threshold", 0.5)
st.subheader("Operating point")
mode = st.radio("Decision rule", modes, key="mode", horizontal=True,
                format_func=lambda m: op.PRESETS.get(m, "Custom threshold (slider)"))


def _to_custom() -> None:
    st.session_state["mode"] = "custom"


slider = st.slider(f"Threshold on p({name}): call an image {name} when p ≥ threshold", 0.0, 1.0,
                   step=0.001, format="%.3f", key="threshold", on_change=_to_custom)
threshold = presets[mode] if mode in presets else (None if mode == "argmax" else float(slider))
point = op.argmax_rule(predictions.y_true, predictions.probs, k) if threshold is None else \
    op.at_threshold(is_positive, score, threshold)
if threshold is None:
    lowest, highest = op.argmax_threshold_range(predictions.probs, k)
    equivalent = np.isfinite(lowest) and np.isfinite(highest) and lowest > highest
    st.caption(f"The argmax rule calls an image {name} when p({name}) is the largest of the three probabilities "
               "(the numbers in metrics.json and the model card). "
               + (f"Here that equals any threshold in ({highest:.4f}, {lowest:.4f}]." if equivalent else
                  f"Here it is no single threshold on p({name}): the lowest p called {name} was {lowest:.4f}, the "
                  f"highest not called {name} {highest:.4f}, because the other two probabilities matter too.")
               + " Move the slider or pick a preset to use a threshold instead.")
else:
    st.caption(f"Threshold in use: p({name}) ≥ {threshold:.6f}" + ("." if mode == "custom" else f", from the preset "
                                                                   f"“{op.PRESETS[mode]}” on this split."))

prevalence = st.number_input(
    f"Prevalence of {name} in the population you will use it on (default: this split's)", 0.0, 1.0,
    value=float(point.prevalence) if np.isfinite(point.prevalence) else 0.0, step=0.01, format="%.4f",
    key=f"prevalence_{split}_{cls}", disabled=not (positives and negatives),
    help="PPV and NPV depend on it (Bayes' theorem); sensitivity and specificity do not.")
adjusted = op.adjusted_predictive_values(point.sensitivity, point.specificity, prevalence)
values = {"Sensitivity": ("sensitivity", point.sensitivity), "Specificity": ("specificity", point.specificity),
          f"PPV at prevalence {prevalence:.4f}": ("ppv", adjusted[0]),
          f"NPV at prevalence {prevalence:.4f}": ("npv", adjusted[1]), "F1 (this split)": ("f1", point.f1)}
for column, (label, (key, value)) in zip(st.columns(len(values)), values.items()):
    column.metric(label, "n/a" if key not in shown or not np.isfinite(value) else f"{value:.3f}")

matrix_column, table_column = st.columns([2, 3])
matrix_column.plotly_chart(ef.binary_confusion_figure(point, name), key="binary",
                           config=ef.png_config(f"operating_point_{split}_{cls}"))
table = ef.metrics_table(report, cls, point, adjusted, prevalence, shown)
table_column.dataframe(table, hide_index=True,
                       column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns[1:]})
table_column.caption("Argmax rule: values and 95% bootstrap intervals from metrics.json. ROC AUC and average "
                     "precision do not depend on the threshold. Empty cells are undefined, or trivial, for this split.")
rule = "argmax" if threshold is None else f"p_{cls} >= {threshold:.6f}"
table_column.download_button("Download this table (CSV)", key="download_csv", mime="text/csv",
                             file_name=f"covidviz_{split}_{cls}_metrics.csv",
                             data=table.assign(**{"split": split, "class": cls, "rule": rule,
                                                  "prevalence": prevalence}).to_csv(index=False))

# --- curves: only where both positives and negatives exist ----------------------------------------------------------
if positives and negatives:
    curve = op.curves(is_positive, score)
    argmax_point = op.argmax_rule(predictions.y_true, predictions.probs, k)
    marked = [("argmax rule", argmax_point, "diamond")]
    if threshold is not None:
        marked.append(("current threshold", point, "x"))
    roc_column, pr_column = st.columns(2)
    auc = ed.metric_value(report, cls, "roc_auc")[0]
    ap = ed.metric_value(report, cls, "average_precision")[0]
    roc_column.plotly_chart(ef.roc_figure(curve, [{"name": n, "fpr": p.fpr, "tpr": p.sensitivity, "symbol": s}
                                                  for n, p, s in marked], auc, name),
                            key="roc", config=ef.png_config(f"roc_{split}_{cls}"))
    pr_points = [{"name": n, "recall": p.sensitivity, "precision": p.ppv, "symbol": s}
                 for n, p, s in marked if np.isfinite(p.ppv)]  # nothing called positive: no precision to mark
    pr_column.plotly_chart(ef.pr_figure(curve, pr_points, ap, point.prevalence, name),
                           key="pr", config=ef.png_config(f"pr_{split}_{cls}"))
else:
    st.info("ROC and precision-recall curves need both images of the class and images of other classes in the split.")

st.subheader("Calibration")
calibration = metrics["splits"][split].get("calibration")
if calibration:
    st.plotly_chart(ef.reliability_figure(calibration, metrics.get("temperature"), title), key="reliability",
                    config=ef.png_config(f"reliability_{split}"))
    st.caption("Top-label reliability over all three classes: of the images the model gave about 80% confidence, "
               "about 80% should be right. The temperature was fitted on the validation split only, so the "
               "internal test and external rows show whether it transfers. The camera icon on each chart saves a PNG.")
else:
    st.info("metrics.json has no calibration results for this split.")
