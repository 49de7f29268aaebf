"""Who the reader is: the one place the dashboard decides it, so sign-in can replace it in one edit.

Until sign-in exists, a reader is a per-browser pseudonym: a random id kept in a cookie of this dashboard
(a year), never derived from anything about the person. When OIDC sign-in lands, return the signed-in
user's subject identifier here instead (``st.user`` once configured), and every verdict follows.
"""

from __future__ import annotations

import re
import uuid

import streamlit as st

READER_COOKIE = "covidviz_reader"
_PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


def current_reader() -> str:
    """The id verdicts are recorded under: ``browser:<random hex>``, the same for every session of this
    browser (cookie), else for this session only (cookies blocked)."""
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
