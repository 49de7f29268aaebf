"""The door every page goes through (``app.py`` calls :func:`admit` before navigation runs).

Three ways the server can be run (:mod:`covidviz.ui.exposure`): single-user local mode (no sign-in, 127.0.0.1
only, every role), a trusted network without sign-in (every role, said on every page), and OpenID Connect
sign-in through Streamlit's own ``st.login`` (the identity provider's ID token, kept by Streamlit in a signed
cookie). With sign-in, nothing but the sign-in screen renders until the user is signed in; the roles come
from the ID token (:mod:`covidviz.ui.access`); a sign-in ends after ``idle_timeout_minutes`` without activity
or ``session_max_hours`` after it was made; sign-in, sign-out, timeouts and refusals are audit events with
the user's subject and issuer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from covidviz.audit.identity import Actor, act_as, os_actor
from covidviz.audit.recorder import record_access
from covidviz.audit.sign_ins import SignInKey, StoredSignIn, end_sign_in, load_sign_in, note_activity
from covidviz.ui.access import ROLES, AccessConfig, roles_from_claims
from covidviz.ui.exposure import LOCAL, SIGN_IN, TRUSTED_NETWORK_ENV, mode
from covidviz.ui.navigation import PageSpec, build_locked_navigation

IDENTITY_COOKIE = "_streamlit_user"  # Streamlit's signed identity cookie (st.login)
MAX_SIGN_INS = 10_000  # remembered sign-ins per process; only bounds memory
ACTIVITY_WRITE_S = 30.0  # at most this often (and a quarter of the idle timeout) a sign-in's activity is saved

log = logging.getLogger("covidviz.ui")


@dataclass(frozen=True)
class Visitor:
    """Who is using this session, and what they may do."""

    mode: str
    actor: Actor
    roles: frozenset[str]
    name: str | None = None  # for the sidebar only (never logged)


@dataclass
class _SignIn:
    last_seen: float
    ended: bool = False
    saved: float = 0.0  # the last activity written to the database


@dataclass
class _SignIns:
    """Every sign-in this process has seen, by (issuer, subject, issued-at): shared by a user's tabs, so
    activity in any of them keeps the sign-in alive and a reload does not restart the idle clock. The audit
    database keeps the same state (:mod:`covidviz.audit.sign_ins`) for the next process: this is its cache."""

    entries: dict[tuple, _SignIn] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False)
def _sign_ins() -> _SignIns:
    return _SignIns()


def _secrets_section(name: str) -> Any:
    try:
        return st.secrets.get(name) if st.secrets.load_if_toml_exists() else None
    except Exception:  # noqa: BLE001  (an unreadable secrets file is treated as none; Streamlit reports it)
        return None


def access_config() -> AccessConfig:
    return AccessConfig.from_mapping(_secrets_section("access"))


def admit() -> Visitor:
    """Let the session in, or render why not and stop the script. Every record made in the rest of this
    run names the returned visitor's actor."""
    act_as(None)
    try:
        how = mode(st.get_option("server.address"), _secrets_section("auth"), client_ip=_client_ip())
        config = access_config()
    except (PermissionError, ValueError) as exc:  # their messages name settings, never secrets
        st.error(str(exc))
        st.stop()
    if how == SIGN_IN:
        return _signed_in(config)
    actor = os_actor()
    act_as(actor)
    if how == LOCAL:
        st.sidebar.info("Single-user local mode: no sign-in, and only this computer can connect "
                        "(127.0.0.1). The README's 'Sign-in and roles' says how to serve a team.",
                        icon=":material/lock:")
    else:
        st.sidebar.warning(f"No sign-in ({TRUSTED_NETWORK_ENV}=1): anyone on this network can use the "
                           "dashboard, the PACS worklist and the audit log.", icon=":material/lock_open:")
    return Visitor(how, actor, frozenset(ROLES))


def _client_ip() -> str | None:
    """The browser's address; None for one on this machine (and where there is no connection: AppTest)."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) else None


def _claims() -> dict[str, Any]:
    return st.user.to_dict() if st.user.is_logged_in else {}


def _signed_in(config: AccessConfig) -> Visitor:
    claims = _claims()
    if not claims:
        _note_refused_cookie()
        _sign_in_screen(config, None)
    actor = Actor(sub=claims.get("sub"), issuer=claims.get("iss"))
    key = (actor.issuer, actor.sub, claims.get("iat"))
    now = time.time()
    ended = _check_session(key, claims, config, now)
    if ended:
        _sign_in_screen(config, ended)
    act_as(actor)
    roles = roles_from_claims(claims, config)
    name = claims.get("name") or claims.get("preferred_username") or claims.get("email") or actor.sub
    _sidebar(key, name, roles, config)
    return Visitor(SIGN_IN, actor, roles, name=str(name))


def _check_session(key: tuple, claims: dict[str, Any], config: AccessConfig, now: float) -> str | None:
    """None when the sign-in is good (its activity noted); else why it ended (recorded once).

    A sign-in this process has not seen yet is looked up in the database first: made before a restart, it
    keeps its idle clock, and one that was signed out or timed out stays ended."""
    store = _sign_ins()
    actor = Actor(sub=key[1], issuer=key[0])
    issued = claims.get("iat")
    stored_key = _database_key(key)
    valid = stored_key is not None
    with store.lock:
        known = key in store.entries
    stored = _stored(stored_key) if valid and not known else None
    with store.lock:
        entry = store.entries.get(key)
        if entry is None and stored is not None:
            entry = _SignIn(last_seen=stored.last_seen, ended=stored.ended, saved=stored.last_seen)
        if entry is not None and entry.ended:
            store.entries[key] = entry
            return "Your session has ended. Sign in again to continue."
        reason = None
        if not valid:
            reason = "Your sign-in does not say who you are or when it was made. Sign in again to continue."
        elif now - issued > config.session_hours * 3600:
            reason = (f"Your sign-in is more than {config.session_hours:g} hours old. Sign in again to "
                      "continue.")
        elif entry is not None and now - entry.last_seen > config.idle_minutes * 60:
            reason = (f"Your session ended after {config.idle_minutes:g} minutes without activity. Sign in "
                      "again to continue.")
        if reason:
            store.entries[key] = _SignIn(last_seen=now, ended=True)
        else:
            first = entry is None
            saved = 0.0 if entry is None else entry.saved
            save = now - saved >= min(ACTIVITY_WRITE_S, config.idle_minutes * 15)
            store.entries[key] = _SignIn(last_seen=now, saved=now if save else saved)
            while len(store.entries) > MAX_SIGN_INS:
                store.entries.pop(next(iter(store.entries)))
    if reason:
        if stored_key is not None:
            _save(end_sign_in, stored_key, now, "session_timeout")
        record_access("session_timeout", note=reason, actor=actor)
        return reason
    if save:
        _save(note_activity, stored_key, now)
    if first:
        record_access("sign_in", actor=actor)
    return None


def _database_key(key: tuple) -> SignInKey | None:
    """The (issuer, subject, issued-at) of a sign-in as the database keys it; None when the ID token lacks the
    subject or the issued-at time, both of which it must carry."""
    issuer, subject, issued = key
    return SignInKey(issuer, subject, issued) if subject and isinstance(issued, (int, float)) else None


def _stored(key: SignInKey) -> StoredSignIn | None:
    """The database's memory of a sign-in; None when it has none or cannot be read (then this process's
    memory alone decides, as it would without a database: the dashboard stays usable, and the log says so)."""
    try:
        return load_sign_in(key)
    except Exception as exc:  # noqa: BLE001  (any database failure; its message may carry the URL)
        log.warning("sign-in state could not be read from the audit database (%s)", type(exc).__name__)
        return None


def _save(write: Callable[..., None], *args: Any) -> None:
    try:
        write(*args)
    except Exception as exc:  # noqa: BLE001  (as _stored)
        log.warning("sign-in state could not be written to the audit database (%s)", type(exc).__name__)


def _note_refused_cookie() -> None:
    """An identity cookie Streamlit would not accept (tampered with, signed with another secret, expired):
    recorded once per browser session, without a user (the cookie's claims are not to be trusted)."""
    if st.context.cookies.get(IDENTITY_COOKIE) and not st.session_state.get("_covidviz_bad_cookie"):
        st.session_state["_covidviz_bad_cookie"] = True
        record_access("access_refused", resource="identity cookie",
                      note="identity cookie rejected: bad signature or expired", actor=Actor())


def _sign_in_screen(config: AccessConfig, reason: str | None) -> None:
    """The only thing an unsigned session sees, whatever page it asked for (no menu either)."""
    def screen() -> None:
        st.title("covidviz")
        if reason:
            st.warning(reason)
        st.write("Sign in with your hospital account to use the dashboard.")
        if st.button("Sign in", type="primary", key="sign_in"):
            st.login(*([config.provider] if config.provider else []))
    build_locked_navigation(screen).run()
    st.stop()


def _sidebar(key: tuple, name: Any, roles: frozenset[str], config: AccessConfig) -> None:
    st.sidebar.caption(f"Signed in as **{name}**  \nroles: {', '.join(sorted(roles)) or 'none'}")
    if st.sidebar.button("Sign out", key="sign_out", icon=":material/logout:"):
        store, now = _sign_ins(), time.time()
        with store.lock:
            store.entries[key] = _SignIn(last_seen=now, ended=True)
        if (stored_key := _database_key(key)) is not None:
            _save(end_sign_in, stored_key, now, "sign_out")
        record_access("sign_out")
        st.logout()
        # Nothing more in this run: the idle watch below would see the session ended and rerun, and a rerun
        # drops the browser's queued redirect to /auth/logout, leaving the identity cookie in place.
        st.stop()
    _idle_watch(key, config.idle_minutes * 60)


def _idle_watch(key: tuple, idle_s: float) -> None:
    """Ends an open but idle tab's session on time, not at its next click: a fragment that checks without
    counting as activity, and reruns the page (which ends the session) once the time is up."""
    @st.fragment(run_every=max(2.0, min(60.0, idle_s / 4)))
    def watch() -> None:
        entry = _sign_ins().entries.get(key)
        if entry is not None and (entry.ended or time.time() - entry.last_seen > idle_s):
            st.rerun()
    watch()


def refuse(spec: PageSpec) -> None:
    """What a page the user's role does not allow shows when reached by URL; recorded."""
    message = f"Your role does not allow {spec.title}. Ask an administrator if you need it."
    st.title(spec.title)
    st.error(message)
    record_access("access_refused", resource=spec.url_path, note=message)

