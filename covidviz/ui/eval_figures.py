"""Plotly figures and tables of the evaluation pages, built from arrays and ``metrics.json`` entries.

No Streamlit here: the pages stay thin and the tests can check every number a figure shows. Each
figure carries its numbers in plain sight (annotations, legend, title) so a screenshot or PNG
export is self-explanatory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.artifacts.saved import metric_value
from covidviz.evaluation.measures.operating_point import OperatingPoint
from covidviz.evaluation.measures.report import format_interval

VIEWS: dict[str, str] = {"counts": "Counts", "recall": "Row-normalised (recall)",
                         "precision": "Column-normalised (precision)"}
_FONT_DARK, _FONT_LIGHT = "#1f2937", "#ffffff"


def png_config(filename: str) -> dict[str, Any]:
    """``st.plotly_chart`` config: the modebar camera saves a PNG in the browser (no kaleido, no server)."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


TITLE_CHARS = 34  # about what fits a third of the wide layout at the title's size


def normalise_confusion(matrix: np.ndarray, view: str) -> np.ndarray:
    """Counts, or each row divided by its total (recall), or each column by its total (precision); NaN
    where the total is zero (a class absent from the split, or never predicted)."""
    matrix = np.asarray(matrix, float)
    if view == "counts":
        return matrix
    axis = {"recall": 1, "precision": 0}[view]
    totals = matrix.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / np.where(totals > 0, totals, 1), np.nan)


def _heatmap(z: np.ndarray, text: list[list[str]], x: list[str], y: list[str], zmax: float, title: str,
             x_title: str, y_title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, zmin=0, zmax=zmax, colorscale="Blues", showscale=False,
                               hoverinfo="skip", xgap=2, ygap=2))
    for i, row in enumerate(text):
        for j, label in enumerate(row):
            dark_cell = np.isfinite(z[i][j]) and zmax > 0 and z[i][j] / zmax > 0.55
            fig.add_annotation(x=x[j], y=y[i], text=label, showarrow=False,
                               font={"size": 15, "color": _FONT_LIGHT if dark_cell else _FONT_DARK})
    # Title on top, the predicted-class axis at the bottom, tick labels horizontal and wrapped: the axes reserve
    # their own room (automargin), so in a narrow column (the comparison page shows three side by side) no
    # label runs into the title and none is cut off.
    fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left", "yref": "container", "y": 0.97,
                             "yanchor": "top"},
                      xaxis={"title": {"text": x_title, "standoff": 8}, "side": "bottom", "type": "category",
                             "tickangle": 0, "automargin": True, "tickfont": {"size": 11}},
                      yaxis={"title": y_title, "autorange": "reversed", "type": "category", "automargin": True,
                             "tickfont": {"size": 11}},
                      margin={"l": 10, "r": 10, "t": 62 + 18 * title.count("<br>"), "b": 10}, height=460,
                      plot_bgcolor="white")
    return fig


def confusion_figure(matrix: np.ndarray, view: str = "counts", title: str = "") -> go.Figure:
    """The 3 x 3 confusion matrix (rows true, columns predicted) in one of :data:`VIEWS`, with totals."""
    matrix = np.asarray(matrix, int)
    values = normalise_confusion(matrix, view)
    rows, cols = matrix.sum(axis=1), matrix.sum(axis=0)
    names = [CLASS_TITLES[c] for c in CLASSES]
    wrapped = [name.replace(" (", "<br>(") for name in names]  # "Pneumonia (not COVID)" is too wide in a column
    y = [f"{name}<br>{rows[i]} true" for i, name in enumerate(wrapped)]
    x = [f"{name}<br>{cols[j]} pred." for j, name in enumerate(wrapped)]
    text = []
    for i in range(len(names)):
        row = []
        for j in range(len(names)):
            if view == "counts":
                row.append(f"{matrix[i, j]}")
            else:
                total = rows[i] if view == "recall" else cols[j]
                share = "–" if np.isnan(values[i, j]) else f"{values[i, j]:.2f}"
                row.append(f"<b>{share}</b><br>{matrix[i, j]} / {total}")
        text.append(row)
    zmax = float(max(matrix.max(), 1)) if view == "counts" else 1.0
    n, correct = int(matrix.sum()), int(np.trace(matrix))
    accuracy = f"{correct / n:.3f}" if n else "n/a"
    if len(title) > TITLE_CHARS and " (" in title:  # a long model name: its qualifier on a line of its own
        head, _, rest = title.rpartition(" (")
        title = f"{head}<br>({rest}"
    heading = f"{title}<br><sup>{VIEWS[view]} · {n} images, {correct} on the diagonal (accuracy {accuracy})</sup>"
    return _heatmap(values, text, x, y, zmax, heading,
                    "Predicted class (argmax rule)", "True class")


def binary_confusion_figure(point: OperatingPoint, class_title: str) -> go.Figure:
    """The 2 x 2 one-vs-rest matrix of the current operating point."""
    z = np.array([[point.tp, point.fn], [point.fp, point.tn]], float)
    text = [[f"TP<br><b>{point.tp}</b>", f"FN<br><b>{point.fn}</b>"],
            [f"FP<br><b>{point.fp}</b>", f"TN<br><b>{point.tn}</b>"]]
    rule = "argmax rule" if point.threshold is None else f"p ≥ {point.threshold:.4f}"
    x = [f"called {class_title}", "called not"]
    y = [f"{class_title}<br>{point.positives} true", f"not {class_title}<br>{point.negatives} true"]
    fig = _heatmap(z, text, x, y, float(max(z.max(), 1)), f"{class_title} vs rest at {rule}", "Decision", "Truth")
    return fig.update_layout(height=330)


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def roc_figure(curve: dict[str, np.ndarray], points: list[dict[str, Any]], auc: float, class_title: str) -> go.Figure:
    """ROC curve of ``p_class`` with the operating points marked (``points``: name, fpr, tpr, symbol)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}))
    fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", name=f"ROC (AUC {_fmt(auc)})",
                             customdata=curve["roc_thresholds"],
                             hovertemplate=("1 − spec %{x:.3f}<br>sens %{y:.3f}<br>p ≥ %{customdata:.4f}"
                                            "<extra></extra>")))
    for p in points:
        fig.add_trace(go.Scatter(x=[p["fpr"]], y=[p["tpr"]], mode="markers", name=p["name"],
                                 marker={"size": 14, "symbol": p.get("symbol", "circle"), "line": {"width": 2}}))
    fig.update_layout(title=f"ROC: {class_title} vs rest", xaxis={"title": "1 − specificity", "range": [-0.02, 1.02]},
                      yaxis={"title": "sensitivity", "range": [-0.02, 1.02]}, height=420,
                      legend={"yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.98})
    return fig


def pr_figure(curve: dict[str, np.ndarray], points: list[dict[str, Any]], ap: float, prevalence: float,
              class_title: str) -> go.Figure:
    """Precision-recall curve with the operating points (``points``: name, recall, precision, symbol)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", line={"dash": "dot", "color": "gray"},
                             name=f"chance (prevalence {_fmt(prevalence)})"))
    fig.add_trace(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines", line_shape="hv",
                             name=f"PR (AP {_fmt(ap)})",
                             hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"))
    for p in points:
        fig.add_trace(go.Scatter(x=[p["recall"]], y=[p["precision"]], mode="markers", name=p["name"],
                                 marker={"size": 14, "symbol": p.get("symbol", "circle"), "line": {"width": 2}}))
    fig.update_layout(title=f"Precision-recall: {class_title} vs rest", height=420,
                      xaxis={"title": "recall (sensitivity)", "range": [-0.02, 1.02]},
                      yaxis={"title": "precision (PPV)", "range": [-0.02, 1.02]},
                      legend={"yanchor": "bottom", "y": 0.02, "xanchor": "left", "x": 0.02})
    return fig


def reliability_figure(calibration: dict[str, Any], temperature: float | None, split_title: str) -> go.Figure:
    """Top-label reliability before and after temperature scaling, ECE and Brier in the legend."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                               line={"dash": "dot", "color": "gray"}))
    for key, label, colour in (("before", "before scaling", "#d62728"), ("after", "after scaling", "#1f77b4")):
        entry = calibration.get(key)
        if not entry:
            continue
        bins = [b for b in entry["reliability"] if b.get("count")]
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
            name=f"{label}: ECE {_fmt(entry.get('ece'))}, Brier {_fmt(entry.get('brier'))}",
            marker={"size": [8 + 14 * np.sqrt(b["count"] / max(x["count"] for x in bins)) for b in bins],
                    "color": colour}, line={"color": colour},
            customdata=[[b["count"], b["lo"], b["hi"]] for b in bins],
            hovertemplate=("confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata[0]} images in "
                           "[%{customdata[1]:.1f}, %{customdata[2]:.1f})<extra></extra>")))
    after = calibration.get("after") or {}
    temp = f"temperature {temperature:.3f}" if temperature is not None else "temperature unknown"
    fig.update_layout(
        title=f"Reliability on {split_title} ({temp})<br><sup>ECE {_fmt(after.get('ece'))}, "
              f"Brier {_fmt(after.get('brier'))} after scaling; marker size = images per bin</sup>",
        xaxis={"title": "mean confidence (top class)", "range": [0, 1.02]},
        yaxis={"title": "accuracy", "range": [0, 1.02]}, height=440,
        legend={"yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.98})
    return fig


def per_source_table(split_entry: dict[str, Any]) -> pd.DataFrame:
    """One row per source plus "all sources": image counts per class, accuracy, recall and precision per
    class, macro F1. Recall of a class the source lacks is empty, not zero."""
    rows = []
    reports = [("All sources", split_entry["overall"]), *sorted(split_entry.get("by_source", {}).items())]
    for source, report in reports:
        row: dict[str, Any] = {"source": source, "images": report["n"]}
        row |= {f"{CLASS_TITLES[c]} images": report["class_counts"][c] for c in CLASSES}
        accuracy, lo, hi = metric_value(report, None, "accuracy")
        row |= {"accuracy": accuracy, "accuracy 95% CI": format_interval(lo, hi) if np.isfinite(accuracy) else ""}
        row |= {f"recall {CLASS_TITLES[c]}": metric_value(report, c, "sensitivity")[0] for c in CLASSES}
        row |= {f"precision {CLASS_TITLES[c]}": metric_value(report, c, "precision")[0] for c in CLASSES}
        row["macro F1"] = metric_value(report, None, "macro_f1")[0]
        rows.append(row)
    return pd.DataFrame(rows)


METRIC_TITLES: dict[str, str] = {
    "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV (precision)", "npv": "NPV", "f1": "F1",
    "roc_auc": "ROC AUC", "average_precision": "Average precision"}
_REPORT_NAMES = {"ppv": "precision", "npv": "npv"}


def metrics_table(report: dict[str, Any], cls: str, point: OperatingPoint, adjusted: tuple[float, float],
                  prevalence: float, shown: tuple[str, ...]) -> pd.DataFrame:
    """The metric explorer's table (and CSV): the argmax rule with bootstrap CIs from metrics.json next
    to the current operating point; metrics outside ``shown`` (undefined for this split) are NaN."""
    rows = []
    for name, title in METRIC_TITLES.items():
        key = _REPORT_NAMES.get(name, name)
        value, lo, hi = metric_value(report, cls, key) if name in shown else (np.nan, np.nan, np.nan)
        current = getattr(point, name) if hasattr(point, name) else value  # AUC, AP: no threshold
        rows.append({"metric": title, "argmax rule": value, "95% CI low": lo, "95% CI high": hi,
                     "current operating point": float(current) if name in shown else np.nan})
    for name, value in (("ppv", adjusted[0]), ("npv", adjusted[1])):
        rows.append({"metric": f"{METRIC_TITLES[name]} at prevalence {prevalence:.4f}", "argmax rule": np.nan,
                     "95% CI low": np.nan, "95% CI high": np.nan,
                     "current operating point": float(value) if name in shown else np.nan})
    return pd.DataFrame(rows)
