"""Readers' verdicts on the model's results: appended, never updated, joined to the audit log by content hash.

A verdict records what a reader said about one result: that they agree, or their own class (or that the
film cannot be assessed), with an optional confidence. It keeps the model version, the output shown and the
calibration that produced it, so the site's figures are computed against what the reader actually saw.
A changed mind is a new row: the history stays, and the reader's newest row counts. Like the audit log,
this table holds no image, no file name and no patient identifier; a reader is an opaque id.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from covidviz.audit.models import Base

VERDICTS = ("agree", "covid", "pneumonia", "normal", "not_assessable")
NOT_ASSESSABLE = "not_assessable"
ORIGINS = ("dashboard", "import")


class Verdict(Base):
    __tablename__ = "site_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # UTC
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    reader: Mapped[str] = mapped_column(String(128), index=True)  # an opaque id, never a name
    verdict: Mapped[str] = mapped_column(String(16))  # one of VERDICTS
    reader_class: Mapped[str | None] = mapped_column(String(32))  # the class the verdict means; None: not assessable
    confidence: Mapped[float | None] = mapped_column(Float)  # the reader's, 0..1, optional
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    model_output: Mapped[str | None] = mapped_column(String(32))  # the class the model showed
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)  # the probabilities shown
    calibration: Mapped[str | None] = mapped_column(String(120))
    temperature: Mapped[float | None] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(16))  # one of ORIGINS
