"""Who an audit record is about on the staff side: the signed-in user (OpenID Connect subject and issuer) on
the dashboard, the operating-system user and host for the CLI and batch jobs.

The dashboard says who is acting for the rest of a script run with :func:`act_as`; anything recorded in that
run (by covidviz.ui, or by covidviz.interop on its behalf) carries it. Code that never says so (the CLI, a
batch job, a test) is the operating-system user on this host. Staff identity belongs in an audit trail;
patient identity never does.
"""

from __future__ import annotations

import getpass
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

MAX_FIELD = 255  # the columns' width; longer values are cut rather than refused


@dataclass(frozen=True)
class Actor:
    """The person (or account) behind an audit record. ``sub``/``issuer``: a signed-in user; ``os_user``/
    ``host``: a process started by someone on a machine (CLI, batch, the dashboard in single-user mode)."""

    sub: str | None = None
    issuer: str | None = None
    os_user: str | None = None
    host: str | None = None

    def __post_init__(self) -> None:
        for name in ("sub", "issuer", "os_user", "host"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value)[:MAX_FIELD])

    @property
    def label(self) -> str | None:
        """How the Audit page and ``audit list`` name this actor (and what their user filter matches)."""
        return user_label(self.sub, self.os_user, self.host)


def user_label(sub: str | None, os_user: str | None, host: str | None) -> str | None:
    """The signed-in subject, else ``os_user@host``, else None (records written before users were kept)."""
    if sub:
        return sub
    if os_user:
        return f"{os_user}@{host}" if host else os_user
    return None


@cache
def os_actor() -> Actor:
    """This process's operating-system user and host (asked once; a container without a passwd entry for
    its uid gives the uid)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        import os
        user = f"uid {os.getuid()}"
    return Actor(os_user=user, host=socket.gethostname())


_current: ContextVar[Actor | None] = ContextVar("covidviz_audit_actor", default=None)


def act_as(actor: Actor | None) -> None:
    """Records made from here on in this thread (a Streamlit script run) name ``actor``; None restores the
    default (the operating-system user)."""
    _current.set(actor)


def current_actor() -> Actor:
    """Whom a record made now is about."""
    return _current.get() or os_actor()
