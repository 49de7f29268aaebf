"""The audit table: one row per event (a prediction, a rejection, a heatmap shown, a sign-in, a refusal),
appended, never updated.

What is deliberately absent: the image, file names and paths (a DICOM file name can carry a patient's name
or ID, and hashing a low-entropy name would not hide it), and every DICOM attribute. The input is known
only by the sha256 of its bytes: whoever holds the file can find its records, nobody can recover the file
from them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from covidviz.audit.vocabulary import INTERFACES, KINDS, OOD_LEVELS  # noqa: F401  (re-exported)


class Base(DeclarativeBase):
    pass


class AuditRecord(Base):
    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # UTC
    kind: Mapped[str] = mapped_column(String(16), index=True)
    interface: Mapped[str] = mapped_column(String(16), index=True)
    input_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # None: the file could not be read
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    app_version: Mapped[str] = mapped_column(String(32))
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)
    predicted_class: Mapped[str | None] = mapped_column(String(32), index=True)  # by the model's decision rule
    # revision 0004: why the model gave no class (predicted_class is then None); None when it gave one
    abstained: Mapped[str | None] = mapped_column(Text)
    ood: Mapped[str | None] = mapped_column(String(16))
    ood_distance: Mapped[float | None] = mapped_column(Float)
    lung_field_plausible: Mapped[bool | None] = mapped_column(Boolean)
    warnings: Mapped[list[str]] = mapped_column(JSON)
    heatmap_method: Mapped[str | None] = mapped_column(String(32))
    heatmap_class: Mapped[str | None] = mapped_column(String(32))
    lung_energy: Mapped[float | None] = mapped_column(Float)  # share of the shown map's energy inside the lungs
    error: Mapped[str | None] = mapped_column(Text)  # the message the user saw for a rejected input
    calibration: Mapped[str | None] = mapped_column(String(120))  # "shipped" or the site profile in use
    temperature: Mapped[float | None] = mapped_column(Float)  # the one that produced ``probabilities``
    # who (revision 0002; older records keep nulls): the signed-in user's OpenID Connect subject and issuer
    # on the dashboard, the operating-system user and host for the CLI, batch jobs and single-user mode
    user_sub: Mapped[str | None] = mapped_column(String(255), index=True)
    user_issuer: Mapped[str | None] = mapped_column(String(255))
    os_user: Mapped[str | None] = mapped_column(String(255), index=True)
    host: Mapped[str | None] = mapped_column(String(255))
    resource: Mapped[str | None] = mapped_column(String(64))  # the page or action an access event is about
