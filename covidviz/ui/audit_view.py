"""The Audit page's content as pure functions of the records table: choices, filtered tables, figures."""

from __future__ import annotations

from datetime import date, datetime, time

import pandas as pd
import plotly.graph_objects as go

from covidviz import CLASS_TITLES
from covidviz.audit.query import AuditFilter, counts_over_time, display_table, filter_records

FREQUENCIES = {"Hour": "h", "Day": "D", "Week": "W", "Month": "M"}


def choices(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The values each filter can take, from the records themselves."""
    def values(column: str) -> list[str]:
        return sorted(v for v in frame[column].dropna().unique())
    return {"interface": values("interface"), "model_version": values("model_version"),
            "predicted_class": values("predicted_class"), "kind": values("kind"), "user": values("user")}


def day_range_filter(days: tuple[date, ...] | list[date], interfaces: list[str], versions: list[str],
                     classes: list[str], kinds: list[str], users: list[str] = ()) -> AuditFilter:
    """The page's widgets as a filter; a date range covers its whole last day (UTC)."""
    since = datetime.combine(days[0], time.min) if len(days) >= 1 else None
    until = datetime.combine(days[-1], time.max) if len(days) >= 1 else None
    return AuditFilter(since=since, until=until, interfaces=tuple(interfaces), model_versions=tuple(versions),
                       classes=tuple(classes), kinds=tuple(kinds), users=tuple(users))


def shown_records(frame: pd.DataFrame, flt: AuditFilter) -> pd.DataFrame:
    return display_table(filter_records(frame, flt))


def counts_figure(frame: pd.DataFrame, freq: str = "D") -> go.Figure:
    """Stacked bars: events per period and model version, so a model change shows where the colours change."""
    counts = counts_over_time(frame, freq)
    figure = go.Figure()
    if not counts.empty:
        totals = counts.groupby(["period", "model_version"])["count"].sum().reset_index()
        for version, rows in totals.groupby("model_version"):
            figure.add_bar(x=rows["period"], y=rows["count"], name=f"model {version}")
    figure.update_layout(barmode="stack", title="Records over time, by model version", xaxis_title=None,
                         yaxis_title="records", height=320, margin={"t": 50, "b": 30}, legend_title=None)
    return figure


def score_figure(frame: pd.DataFrame, class_name: str, freq: str = "D") -> go.Figure:
    """Box plots of one class's probability per period and model version: a drift, or a step at a model
    change, shows as boxes moving."""
    predictions = frame[(frame["kind"] == "prediction") & frame[f"p_{class_name}"].notna()]
    figure = go.Figure()
    if not predictions.empty:
        periods = predictions["created_at"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
        for version, rows in predictions.assign(period=periods).groupby("model_version"):
            figure.add_box(x=rows["period"], y=rows[f"p_{class_name}"], name=f"model {version}", boxmean=True)
    figure.update_layout(boxmode="group", title=f"P({CLASS_TITLES.get(class_name, class_name)}) over time",
                         yaxis={"range": [0, 1], "title": "probability"}, height=320, margin={"t": 50, "b": 30},
                         legend_title=None)
    return figure


def headline(frame: pd.DataFrame) -> dict[str, int]:
    """Counts for the metric tiles."""
    kinds = frame["kind"].value_counts()
    return {"records": len(frame), "predictions": int(kinds.get("prediction", 0)),
            "rejections": int(kinds.get("rejection", 0)),
            "out of distribution": int((frame["ood"] == "outlier").sum())}
