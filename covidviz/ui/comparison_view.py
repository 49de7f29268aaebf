"""Tables and figures of the Model comparison page, built from ``comparison.json`` entries only.

No Streamlit here, so the tests can check that every number the page shows is the artifact's. Intervals are
written "value (low–high)" with three decimals, the same on every row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.documents.facts import fmt_ci, fmt_difference
from covidviz.evaluation.measures.comparison import candidate_models

SPLIT_NAMES = {"test": "Internal test (held-out patients)", "external": "External (Hannover COVID-19, Shenzhen normals)"}


def reduced_note(report: dict[str, Any]) -> str:
    """What the reader must know before comparing rows: which recipe the comparison models had, and how much
    training that is next to the shipped model's (both counted from the sidecars)."""
    recipe = report["recipe"]
    seen = {m["id"]: m.get("training_images_seen") for m in report["models"]}
    shipped = seen.get("shipped")
    reduced = next((m.get("training_images_seen") for m in report["models"]
                    if m["id"] != "shipped" and m.get("reduced_recipe", True) and m.get("training_images_seen")), None)
    candidates = candidate_models(report)
    budget = (f" Each drew {reduced:,} training images; the shipped model drew {shipped:,} over its stages, "
              f"{shipped / reduced:.0f} times as many." if shipped and reduced else "")
    return (f"Every model marked *reduced recipe* was trained on the **{recipe['name']}**: {recipe['description']}."
            f"{budget} So those rows compare backbones with each other under one small budget, and the shipped row "
            "shows what the full recipe reached. On a GPU, the same commands with more epochs and a larger input "
            "give the full comparison."
            + "".join(f" **{m['title']}**, a full recipe that was not shipped: {m['recipe']}." for m in candidates))


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def comparison_table(report: dict[str, Any], split: str) -> pd.DataFrame:
    """One row per model: the measures on ``split`` with their 95% intervals, its difference in macro-F1 from
    the shipped model (paired bootstrap), size and speed."""
    rows = []
    for m in report["models"]:
        s = m["splits"][split]
        difference = m["macro_f1_difference"][split] if m.get("macro_f1_difference") else None
        rows.append({
            "model": m["title"], "images": s["n"], "macro-F1": fmt_ci(s["macro_f1"]),
            **{f"F1 {CLASS_TITLES[c]}": fmt_ci(s["f1"][c]) for c in CLASSES},
            "COVID-19 sensitivity": fmt_ci(s["covid_sensitivity"]),
            "COVID-19 specificity": fmt_ci(s["covid_specificity"]),
            "ROC AUC COVID-19": fmt_ci(s["roc_auc"]["covid"]), "ROC AUC (macro)": fmt_ci(s["macro_roc_auc"]),
            "Δ macro-F1 vs shipped": fmt_difference(difference),
            "parameters (M)": fmt(m["parameters"] / 1e6, 1), "weights fp16 (MB)": fmt(m["weights_mb_fp16"], 1),
            "weights in repo": "yes" if m["weights_committed"] else "no (recipe reproduces them)",
            "latency batch 1 (ms)": fmt(m["latency_ms_batch1"], 1),
            "throughput (img/s)": fmt(m["throughput_img_s_batch32"], 1),
        })
    return pd.DataFrame(rows)


def roc_overlay(report: dict[str, Any], split: str, cls: str) -> go.Figure:
    """Every model's one-vs-rest ROC curve for ``cls`` on ``split``, AUC (with interval) in the legend."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}))
    for m in report["models"]:
        curve = m["roc"][split].get(cls)
        if curve is None:
            continue
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", line={"shape": "hv"},
                                 name=f"{m['title']}: AUC {fmt_ci(m['splits'][split]['roc_auc'][cls])}"))
    fig.update_layout(title=f"ROC: {CLASS_TITLES[cls]} vs rest · {SPLIT_NAMES[split]}",
                      xaxis={"title": "1 − specificity", "range": [-0.02, 1.02]},
                      yaxis={"title": "sensitivity", "range": [-0.02, 1.02]}, height=480,
                      legend={"yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.98})
    return fig


def roc_classes(report: dict[str, Any], split: str) -> list[str]:
    """The classes with a ROC curve on ``split`` (both positives and negatives present)."""
    return [c for c in CLASSES if any(c in m["roc"][split] for m in report["models"])]


def crossval_table(cv: dict[str, Any], split: str = "test") -> pd.DataFrame:
    """Per-fold measures on each fold's held-out patients (or the external sets), then mean and SD."""
    rows = [{"fold": str(f["fold"] + 1), "images": f[split]["n"], "macro-F1": fmt(f[split]["macro_f1"]),
             "COVID-19 sensitivity": fmt(f[split]["covid_sensitivity"]),
             "COVID-19 specificity": fmt(f[split]["covid_specificity"])} for f in cv["folds"]]
    summary = cv["summary"][split]
    rows.append({"fold": "mean ± SD", "images": sum(f[split]["n"] for f in cv["folds"]),
                 **{label: f"{fmt(summary[key]['mean'])} ± {fmt(summary[key]['std'])}"
                    for label, key in (("macro-F1", "macro_f1"), ("COVID-19 sensitivity", "covid_sensitivity"),
                                       ("COVID-19 specificity", "covid_specificity"))}})
    return pd.DataFrame(rows)
