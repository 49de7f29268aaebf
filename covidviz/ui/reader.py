"""Who the reader is: the one place the dashboard decides it.

With sign-in, the reader is the signed-in user's subject identifier (what the audit trail names them by).
In single-user local mode there is nobody to name, so a reader is a per-browser pseudonym: a random id kept
in a cookie of this dashboard (a year), never derived from anything about the person.
"""

from __future__ import annotations

import re
import uuid

import streamlit as st

from covidviz.audit.identity import current_actor

READER_COOKIE = "covidviz_reader"
_PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


def current_reader() -> str:
    """The id verdicts are recorded under: the signed-in subject; else ``browser:<random hex>``, the same for
    every session of this browser (cookie), else for this session only (cookies blocked)."""
    signed_in = current_actor().sub
    if signed_in:
        return signed_in
    cookie = st.context.cookies.get(READER_COOKIE)
    if cookie and _PSEUDONYM.match(cookie):
        return f"browser:{cookie}"
    pseudonym = st.session_state.setdefault("reader_pseudonym", uuid.uuid4().hex)
    if not st.session_state.get("reader_cookie_set"):
        import streamlit.components.v1 as components
        # a same-origin component frame sets the dashboard's cookie; the next session reads it back
        components.html(f"<script>document.cookie = '{READER_COOKIE}={pseudonym}; path=/; max-age=31536000; "
                        "SameSite=Strict';</script>", height=0)
        st.session_state["reader_cookie_set"] = True
    return f"browser:{pseudonym}"
