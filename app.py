"""covidviz dashboard: the door (sign-in, roles), navigation and the shared sidebar. Each page lives in
app_pages/ and stays thin; which pages exist and who may open them is covidviz/ui/navigation.py."""

from __future__ import annotations

import streamlit as st

from covidviz.ui.guard import admit, refuse
from covidviz.ui.navigation import build_navigation
from covidviz.ui.request_log import quiet_libraries
from covidviz.ui.resources import weights_dir
from covidviz.ui.sidebar import render_sidebar

quiet_libraries()  # no study UIDs or request URLs from dicomweb-client and urllib3 in the server's log
st.set_page_config(page_title="covidviz", page_icon=":material/radiology:", layout="wide")
visitor = admit()  # renders the sign-in screen and stops, until the session may see anything at all
navigation = build_navigation(visitor.roles, refuse)
render_sidebar(weights_dir())
navigation.run()
