"""Reading the audit log back: filtered tables, summaries per model version over time, safe exports.

``load_records`` is the only function here that touches the database; the rest take and return
DataFrames, so the CLI, the Audit page and the tests share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from covidviz import CLASSES
from covidviz.audit.identity import user_label
from covidviz.text import FORMULA_START, neutralise_formula, safe_csv_bytes  # noqa: F401  (re-exported)

COLUMNS = ("id", "created_at", "kind", "interface", "input_sha256", "model_name", "model_sha256", "app_version",
           "probabilities", "predicted_class", "abstained", "ood", "ood_distance", "lung_field_plausible", "warnings",
           "heatmap_method", "heatmap_class", "lung_energy", "error", "calibration", "temperature", "user_sub",
           "user_issuer", "os_user", "host", "resource")
VERSION_CHARS = 12  # a model version is shown as its weights sha256's first 12 hex digits, as everywhere else


@dataclass(frozen=True)
class AuditFilter:
    """Which records to show; None or empty means no restriction."""

    since: datetime | None = None
    until: datetime | None = None
    interfaces: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()  # sha256 prefixes
    classes: tuple[str, ...] = ()  # predicted class
    kinds: tuple[str, ...] = ()
    users: tuple[str, ...] = ()  # a signed-in subject, an operating-system user, or user@host


def as_utc(moment: datetime | None) -> datetime | None:
    """A naive datetime is taken as UTC (SQLite returns naive ones; users type them)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def load_records(url: str | None = None, flt: AuditFilter = AuditFilter(), limit: int | None = None) -> pd.DataFrame:
    """Records matching ``flt``, newest first (the first ``limit`` only), one column per field plus
    ``model_version`` and ``p_<class>``. A database without the audit table gives an empty table."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from covidviz.audit.db import get_engine, has_schema
    from covidviz.audit.models import AuditRecord
    if not has_schema(url):
        return tidy(pd.DataFrame(columns=list(COLUMNS)))
    query = select(*(getattr(AuditRecord, c) for c in COLUMNS)).order_by(AuditRecord.created_at.desc(),
                                                                          AuditRecord.id.desc())
    if flt.since is not None:
        query = query.where(AuditRecord.created_at >= as_utc(flt.since))
    if flt.until is not None:
        query = query.where(AuditRecord.created_at <= as_utc(flt.until))
    if flt.interfaces:
        query = query.where(AuditRecord.interface.in_(flt.interfaces))
    if flt.classes:
        query = query.where(AuditRecord.predicted_class.in_(flt.classes))
    if flt.kinds:
        query = query.where(AuditRecord.kind.in_(flt.kinds))
    if flt.model_versions:
        from sqlalchemy import or_
        query = query.where(or_(*(AuditRecord.model_sha256.startswith(v.lower()) for v in flt.model_versions)))
    if flt.users:
        query = query.where(_user_clause(AuditRecord, flt.users))
    if limit:
        query = query.limit(limit)
    with Session(get_engine(url)) as session:
        rows = session.execute(query).all()
    return tidy(pd.DataFrame(rows, columns=list(COLUMNS)))


def _user_clause(record, users: tuple[str, ...]):
    """Records whose signed-in subject, operating-system user, or ``os_user@host`` is one of ``users``."""
    from sqlalchemy import and_, or_
    clauses = [record.user_sub.in_(users), record.os_user.in_(users)]
    for user in users:
        name, at, host = user.rpartition("@")
        if at and name:
            clauses.append(and_(record.os_user == name, record.host == host))
    return or_(*clauses)


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed columns: UTC timestamps, ``model_version``, one ``p_<class>`` column per class seen."""
    frame = frame.copy()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["model_version"] = frame["model_sha256"].map(lambda s: s[:VERSION_CHARS] if isinstance(s, str) else None)
    frame["user"] = [user_label(*(v if isinstance(v, str) else None for v in row))
                     for row in zip(frame["user_sub"], frame["os_user"], frame["host"])]
    classes = list(CLASSES) + sorted({c for p in frame["probabilities"] if isinstance(p, dict) for c in p}
                                     - set(CLASSES))
    for c in classes:
        frame[f"p_{c}"] = frame["probabilities"].map(lambda p, c=c: p.get(c) if isinstance(p, dict) else None
                                                     ).astype("float64")
    frame["warnings"] = frame["warnings"].map(lambda w: list(w) if isinstance(w, (list, tuple)) else [])
    return frame


def in_date_range(frame: pd.DataFrame, since: datetime | None, until: datetime | None) -> pd.Series:
    """Rows whose ``created_at`` lies in [since, until] (an open end where None)."""
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame["created_at"] >= pd.Timestamp(as_utc(since))
    if until is not None:
        keep &= frame["created_at"] <= pd.Timestamp(as_utc(until))
    return keep


def filter_records(frame: pd.DataFrame, flt: AuditFilter) -> pd.DataFrame:
    """The same filter as :func:`load_records`, on a table already loaded."""
    keep = in_date_range(frame, flt.since, flt.until)
    if flt.interfaces:
        keep &= frame["interface"].isin(flt.interfaces)
    if flt.classes:
        keep &= frame["predicted_class"].isin(flt.classes)
    if flt.kinds:
        keep &= frame["kind"].isin(flt.kinds)
    if flt.model_versions:
        versions = tuple(v.lower() for v in flt.model_versions)
        keep &= frame["model_sha256"].map(lambda s: isinstance(s, str) and s.startswith(versions))
    if flt.users:
        keep &= (frame["user"].isin(flt.users) | frame["user_sub"].isin(flt.users)
                 | frame["os_user"].isin(flt.users))
    return frame[keep]


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads, flat (no dicts or lists), in reading order."""
    probs = [c for c in frame.columns if c.startswith("p_")]
    out = frame[["created_at", "kind", "interface", "user", "model_version", "predicted_class", "abstained", *probs, "ood",
                 "lung_field_plausible", "heatmap_method", "lung_energy", "warnings", "error", "resource",
                 "calibration", "input_sha256", "model_name", "app_version", "user_issuer", "id"]].copy()
    out["warnings"] = out["warnings"].map(" | ".join)
    return out


def counts_over_time(frame: pd.DataFrame, freq: str = "D") -> pd.DataFrame:
    """Events per period, model version, kind and predicted class (long form)."""
    if frame.empty:
        return pd.DataFrame(columns=["period", "model_version", "kind", "predicted_class", "count"])
    periods = frame["created_at"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    grouped = frame.assign(period=periods, predicted_class=frame["predicted_class"].fillna("—"),
                           model_version=frame["model_version"].fillna("—"))
    return (grouped.groupby(["period", "model_version", "kind", "predicted_class"]).size()
            .rename("count").reset_index())


def score_summary(frame: pd.DataFrame, freq: str = "D") -> pd.DataFrame:
    """Per period and model version: number of predictions and each class probability's mean and quartiles,
    so a shift after a model change (or in the incoming images) shows as a step."""
    predictions = frame[frame["kind"] == "prediction"]
    probs = [c for c in frame.columns if c.startswith("p_")]
    if predictions.empty:
        return pd.DataFrame(columns=["period", "model_version", "n"])
    periods = predictions["created_at"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    grouped = predictions.assign(period=periods).groupby(["period", "model_version"])
    out = grouped.size().rename("n").to_frame()
    for c in probs:
        stats = grouped[c].describe()[["mean", "25%", "50%", "75%"]]
        stats.columns = [f"{c}_{s.rstrip('%')}" if s != "mean" else f"{c}_mean" for s in stats.columns]
        out = out.join(stats)
    share = grouped["ood"].apply(lambda s: float((s == "outlier").mean()))
    return out.join(share.rename("outlier_share")).reset_index()


def summary_text(frame: pd.DataFrame) -> str:
    """A few lines for a terminal: totals by kind, interface and model version."""
    if frame.empty:
        return "no audit records"
    lines = [f"{len(frame)} records from {frame['created_at'].min():%Y-%m-%d %H:%M} to "
             f"{frame['created_at'].max():%Y-%m-%d %H:%M} UTC"]
    for column in ("kind", "interface", "user", "model_version", "predicted_class"):
        counts = frame[column].fillna("—").value_counts()
        lines.append(f"{column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A flat, spreadsheet-safe copy of the records: lists joined, dicts spread into p_ columns."""
    out = frame.drop(columns=["probabilities"]).copy()
    out["warnings"] = out["warnings"].map(" | ".join)
    out["created_at"] = out["created_at"].map(lambda t: t.isoformat() if pd.notna(t) else None)
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with every text cell neutralised against formula injection (error messages echo user input)."""
    return safe_csv_bytes(export_frame(frame))


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io
    buffer = io.BytesIO()
    export_frame(frame).assign(created_at=frame["created_at"]).to_parquet(buffer, index=False)
    return buffer.getvalue()


def export_records(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the records as CSV or Parquet, by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        path.write_bytes(to_csv_bytes(frame))
    elif suffix in (".parquet", ".pq"):
        path.write_bytes(to_parquet_bytes(frame))
    else:
        raise ValueError(f"cannot export to {path.name!r}: name a .csv or .parquet file")
    return path
