"""The Site performance page's content: the site's figures beside the shipped evaluation's, and drift.

Figures come from :func:`covidviz.audit.site_report.verdict_figures` and :func:`drift_report` (what
``site report`` prints), drawn with the evaluation pages' own figures (covidviz.ui.eval_figures).
"""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from covidviz import CLASS_TITLES, CLASSES
from covidviz.audit.db import database_url, safe_url
from covidviz.audit.query import AuditFilter, load_records
from covidviz.audit.site_report import (
    DRIFT_MEASURES,
    VerdictFilter,
    drift_report,
    filter_verdicts,
    load_drift_reference,
    verdict_figures,
)
from covidviz.audit.verdict_store import current_verdicts, load_verdicts
from covidviz.evaluation.measures.report import format_interval
from covidviz.evaluation.measures.site_drift import PSI_ALARM, PSI_WARN
from covidviz.evaluation.measures.site_measures import shipped_figures
from covidviz.model.decision import rule_from_sidecar
from covidviz.ui.eval_figures import confusion_figure, png_config, reliability_figure
from covidviz.verified import read_sidecar

N_BOOT = 500  # resamples for the page's intervals (the CLI defaults to 1000)
RATE_TITLES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "precision": "PPV", "npv": "NPV"}
MEASURE_TITLES = {**{f"p_{c}": f"P({CLASS_TITLES[c]})" for c in CLASSES}, "ood_distance": "OOD distance",
                  "no_plausible_lungs": "no plausible lungs"}


def rates_table(figures: dict[str, Any]) -> pd.DataFrame:
    """Per class: verdicts, and each rate with its 95% interval, or "not yet meaningful" below the minimum."""
    rows = []
    for c, entry in figures["per_class"].items():
        row = {"class": CLASS_TITLES[c], "verdicts": entry["n"]}
        for name, title in RATE_TITLES.items():
            value = entry[name]
            if not entry["meaningful"]:
                row[title] = f"not yet meaningful (n < {figures.get('min_meaningful', 30)})"
            elif value["value"] is None:
                row[title] = "n/a"
            else:
                row[title] = f"{value['value']:.3f} ({format_interval(*value['ci95'])})"
        rows.append(row)
    return pd.DataFrame(rows)


def _headline(column, figures: dict[str, Any], title: str) -> None:
    column.markdown(f"**{title}**")
    a, b, c = column.columns(3)
    a.metric("Verdicts", f"{figures['n_verdicts']:,}")
    b.metric("Agreement", "—" if figures["agreement"] is None else f"{figures['agreement']:.1%}")
    c.metric("Cohen's κ", "—" if figures["kappa"] is None else f"{figures['kappa']:.3f}")


def _figures_column(column, figures: dict[str, Any], title: str, key: str, temperature: float | None) -> None:
    _headline(column, figures, title)
    column.plotly_chart(confusion_figure(np.asarray(figures["confusion"]), "counts",
                                         f"{title}: rows reader's class, columns model's class"),
                        key=f"{key}_confusion", config=png_config(f"{key}_confusion"))
    column.dataframe(rates_table(figures), hide_index=True, key=f"{key}_rates")
    thin = [f"{CLASS_TITLES[c]} ({e['n']})" for c, e in figures["per_class"].items() if not e["meaningful"]]
    if thin:
        column.caption(f"Not yet meaningful, fewer than {figures.get('min_meaningful', 30)} verdicts: "
                       f"{', '.join(thin)}. Their rates are not shown.")
    if figures["reliability"]:
        column.plotly_chart(reliability_figure({"after": {"reliability": figures["reliability"],
                                                          "ece": figures["ece"], "brier": figures["brier"]}},
                                               temperature, title), key=f"{key}_reliability",
                            config=png_config(f"{key}_reliability"))


@st.cache_data(show_spinner=False)
def _shipped(weights_dir: str) -> dict[str, Any] | None:
    from covidviz.evaluation.artifacts.saved import load_metrics, load_predictions
    try:
        metrics = load_metrics(weights_dir)
        test = load_predictions(weights_dir, "test")
    except Exception:  # noqa: BLE001  (a weights folder without evaluation artifacts shows the site alone)
        return None
    rule = rule_from_sidecar(read_sidecar(Path(weights_dir)))
    return {"figures": shipped_figures(metrics["splits"]["test"], test.y_true, test.probs, rule),
            "temperature": metrics.get("temperature")}


def verdict_filter(verdicts: pd.DataFrame) -> VerdictFilter:
    """The page's date and reader filters."""
    first, last = verdicts["created_at"].min().date(), verdicts["created_at"].max().date()
    c1, c2 = st.columns(2)
    days = c1.date_input("Verdicts given (UTC)", value=(first, last), key="site_days")
    days = days if isinstance(days, (tuple, list)) else (days,)
    readers = c2.multiselect("Reader", sorted(verdicts["reader"].unique()), key="site_readers")
    return VerdictFilter(since=datetime.combine(days[0], time.min) if days else None,
                         until=datetime.combine(days[-1], time.max) if days else None, readers=tuple(readers))


def render_site_performance(weights_dir: str | Path) -> None:
    url = database_url()
    st.caption(f"Database: `{safe_url(url)}`. The site's figures measure agreement with this site's readers' "
               "verdicts (each reader's newest verdict per film; \"not assessable\" counts in no class), beside "
               "the shipped evaluation on the internal test split against its labels.")
    try:
        history = load_verdicts(url)
        records = load_records(url, AuditFilter(kinds=("prediction",)), limit=200_000)
    except Exception as exc:  # noqa: BLE001  (an unreachable database is a message, not a crash)
        st.error(f"The audit database could not be read: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
        return
    shipped = _shipped(str(weights_dir))
    if history.empty:
        st.info("No verdicts yet: record one under a result on the Diagnose page, or import a CSV with "
                "`python -m covidviz site verdicts import FILE.csv`.")
    else:
        flt = verdict_filter(history)
        current = filter_verdicts(current_verdicts(history), flt)
        report = verdict_figures(current, n_boot=N_BOOT, rule=rule_from_sidecar(read_sidecar(Path(weights_dir))))
        st.metric("Verdicts counted", f"{report['n_verdicts']:,}")
        for version, figures in report["by_model"].items():
            st.subheader(f"Model {version}")
            left, right = st.columns(2)
            temps = current.loc[current["model_version"] == version, "temperature"].dropna().unique()
            _figures_column(left, figures, "This site", f"site_{version}", float(temps[-1]) if len(temps) else None)
            if shipped is not None:
                _figures_column(right, shipped["figures"], "Shipped evaluation (internal test)",
                                f"shipped_{version}", shipped["temperature"])
    render_drift(records, weights_dir)


def drift_figure(points: list[dict[str, Any]]) -> go.Figure:
    """PSI of each measure over time (sliding window), with the warning and alarm thresholds."""
    figure = go.Figure()
    x = [p["at"] for p in points]
    for m in DRIFT_MEASURES:
        figure.add_scatter(x=x, y=[p.get(m) for p in points], mode="lines+markers", name=MEASURE_TITLES[m])
    figure.add_hline(y=PSI_WARN, line={"dash": "dot", "color": "orange"}, annotation_text="warning")
    figure.add_hline(y=PSI_ALARM, line={"dash": "dash", "color": "red"}, annotation_text="alarm")
    figure.update_layout(title="Drift: population stability index of the recent window against validation",
                         yaxis_title="PSI", height=360, margin={"t": 50, "b": 30}, legend_title=None)
    return figure


def render_drift(records: pd.DataFrame, weights_dir: str | Path, chart: bool = True) -> None:
    """The drift alarm (and, with ``chart``, its PSI over time) per model version."""
    drift = drift_report(records, load_drift_reference(weights_dir), over_time=chart)
    if chart:
        st.subheader("Drift of incoming films")
    if drift["reference"] is None:
        st.caption(drift["note"])
        return
    for version, figures in drift["by_model"].items():
        if "measures" not in figures:
            if chart:
                st.caption(f"Model {version}: {figures['note']}.")
            continue
        crossed = [f"{MEASURE_TITLES[m]} (PSI {f['psi']:.2f})" for m, f in figures["measures"].items()
                   if f["level"] == "alarm"]
        warned = [f"{MEASURE_TITLES[m]} (PSI {f['psi']:.2f})" for m, f in figures["measures"].items()
                  if f["level"] == "warning"]
        if crossed:
            st.error(f"Drift alarm, model {version}: the last {min(figures['n'], drift['window'])} films differ "
                     f"from the validation images in {', '.join(crossed)} (PSI ≥ {PSI_ALARM}). Check what "
                     "changed (detector, protocol, population) before trusting the figures.")
        elif warned:
            st.warning(f"Drift warning, model {version}: {', '.join(warned)} (PSI ≥ {PSI_WARN}).")
        elif chart:
            judged = any(f["psi"] is not None for f in figures["measures"].values())
            st.caption(f"Model {version}: " + ("no drift measure crosses its threshold." if judged else
                                               f"fewer than {figures['min_window']} predictions: not judged yet."))
        if chart and figures["over_time"]:
            st.plotly_chart(drift_figure(figures["over_time"]), key=f"drift_{version}")
