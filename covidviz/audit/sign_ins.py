"""Sign-ins that outlive the server process: when each was last active, and whether it has ended.

Streamlit keeps a signed-in user's identity in a signed cookie that stays valid for as long as its signature
does. Ending a sign-in (the reader signed out, or left it idle past the timeout) therefore has to be
remembered by the server, and remembered across a restart: a dashboard that kept this in memory only would,
once restarted, let the same cookie straight back in. One row per sign-in, keyed by what the identity
provider issued: the issuer, the subject and the ID token's issued-at time, so two sign-ins of one person (two
browsers) end separately. Times are seconds since the epoch (what the ID token's ``iat`` is too). Staff
identity only; the audit trail keeps the events themselves (``sign_in``, ``sign_out``, ``session_timeout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Float, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from covidviz.audit.db import migrate
from covidviz.audit.identity import MAX_FIELD
from covidviz.audit.models import Base

END_REASONS = ("sign_out", "session_timeout")


class SignInRow(Base):
    __tablename__ = "sign_ins"
    __table_args__ = (UniqueConstraint("issuer", "subject", "issued_at", name="uq_sign_ins_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(MAX_FIELD))  # "" when the token named none
    subject: Mapped[str] = mapped_column(String(MAX_FIELD))
    issued_at: Mapped[float] = mapped_column(Float)  # the ID token's iat
    last_seen: Mapped[float] = mapped_column(Float)  # the last activity written (see the guard's interval)
    ended_at: Mapped[float | None] = mapped_column(Float)  # None while the sign-in is open
    end_reason: Mapped[str | None] = mapped_column(String(16))  # one of END_REASONS


class SignInKey(NamedTuple):
    """One sign-in as the identity provider issued it."""

    issuer: str | None
    subject: str
    issued_at: float


@dataclass(frozen=True)
class StoredSignIn:
    last_seen: float
    ended: bool


def _where(key: SignInKey):
    return (SignInRow.issuer == (key.issuer or "")[:MAX_FIELD], SignInRow.subject == key.subject[:MAX_FIELD],
            SignInRow.issued_at == float(key.issued_at))


def load_sign_in(key: SignInKey, url: str | None = None) -> StoredSignIn | None:
    """What the database remembers of this sign-in; None for one it has never seen."""
    with Session(migrate(url)) as session:
        row = session.execute(select(SignInRow).where(*_where(key))).scalar_one_or_none()
        return None if row is None else StoredSignIn(row.last_seen, row.ended_at is not None)


def note_activity(key: SignInKey, at: float, url: str | None = None) -> None:
    """The sign-in was active at ``at`` (creates its row the first time). An ended sign-in stays ended."""
    _write(key, url, last_seen=at)


def end_sign_in(key: SignInKey, at: float, reason: str, url: str | None = None) -> None:
    """The sign-in has ended (signed out, or timed out) at ``at``: from now on its cookie is refused here and
    by every later process on this database."""
    if reason not in END_REASONS:
        raise ValueError(f"end reason must be one of {', '.join(END_REASONS)}, got {reason!r}")
    _write(key, url, last_seen=at, ended_at=at, end_reason=reason)


def _write(key: SignInKey, url: str | None, **values: float | str) -> None:
    """Insert or update the key's row, synchronously; two first writes at once (two tabs) both land."""
    engine = migrate(url)
    for attempt in range(2):
        try:
            with Session(engine) as session, session.begin():
                row = session.execute(select(SignInRow).where(*_where(key))).scalar_one_or_none()
                if row is None:
                    session.add(SignInRow(issuer=(key.issuer or "")[:MAX_FIELD], subject=key.subject[:MAX_FIELD],
                                          issued_at=float(key.issued_at), **values))
                elif row.ended_at is None:
                    for name, value in values.items():
                        setattr(row, name, value)
            return
        except IntegrityError:  # the other writer inserted it first: update theirs
            if attempt:
                raise
