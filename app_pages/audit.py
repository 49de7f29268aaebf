"""Audit log: every result the model gave through the dashboard, the CLI, the PACS connection and batch jobs,
with the model version that gave it. Filters, counts and score distributions over time, exports."""

import streamlit as st

from covidviz import CLASSES
from covidviz.audit.db import database_url, safe_url
from covidviz.audit.query import filter_records, load_records, to_csv_bytes, to_parquet_bytes
from covidviz.ui.audit_view import (
    FREQUENCIES,
    choices,
    counts_figure,
    day_range_filter,
    headline,
    score_figure,
    shown_records,
)
from covidviz.ui.resources import weights_dir
from covidviz.ui.site_view import render_drift

MAX_RECORDS = 200_000

st.title("Audit log")
url = database_url()
st.caption(f"Database: `{safe_url(url)}` (set `COVIDVIZ_DB_URL` to use another). Records hold content hashes, "
           "model versions, probabilities, flags, error messages and the staff member who acted (sign-in subject "
           "or operating-system user): never images, file names or patient data.")
try:
    records = load_records(url, limit=MAX_RECORDS)
except Exception as exc:  # noqa: BLE001  (an unreachable database is a message, not a crash)
    st.error(f"The audit log could not be read: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    st.stop()
if records.empty:
    st.info("No records yet: predictions made on the Diagnose page, with `python -m covidviz predict` or "
            "`batch`, or through the PACS connection appear here.")
    st.stop()
render_drift(records, weights_dir(), chart=False)  # the drift alarm, when a measure crosses its threshold
if len(records) == MAX_RECORDS:
    st.warning(f"Showing the newest {MAX_RECORDS:,} records; export with `python -m covidviz audit export` for all.")

options = choices(records)
first, last = records["created_at"].min().date(), records["created_at"].max().date()
c1, c2, c3, c4, c5, c6 = st.columns(6)
days = c1.date_input("Dates (UTC)", value=(first, last), key="days")
interfaces = c2.multiselect("Interface", options["interface"], key="interface")
versions = c3.multiselect("Model version", options["model_version"], key="model_version")
classes = c4.multiselect("Predicted class", options["predicted_class"], key="predicted_class")
kinds = c5.multiselect("Kind", options["kind"], key="kind")
users = c6.multiselect("User", options["user"], key="user",
                       help="The signed-in user's subject (sub) on the dashboard; user@host for the CLI, batch jobs "
                            "and single-user mode. Records made before users were kept have none.")
flt = day_range_filter(days if isinstance(days, (tuple, list)) else (days,), interfaces, versions, classes, kinds,
                       users)
selected = filter_records(records, flt)

for column, (name, value) in zip(st.columns(4), headline(selected).items()):
    column.metric(name.capitalize(), f"{value:,}")
f1, f2 = st.columns([1, 1])
freq = FREQUENCIES[f1.segmented_control("Period", list(FREQUENCIES), default="Day", key="freq") or "Day"]
shown_class = f2.selectbox("Score distribution of", CLASSES, key="score_class")
left, right = st.columns(2)
left.plotly_chart(counts_figure(selected, freq), key="counts")
right.plotly_chart(score_figure(selected, shown_class, freq), key="scores")

st.dataframe(shown_records(records, flt), hide_index=True, key="records")
d1, d2 = st.columns(2)
d1.download_button("Records (CSV)", to_csv_bytes(selected), "covidviz_audit.csv", "text/csv", key="csv")
d2.download_button("Records (Parquet)", to_parquet_bytes(selected), "covidviz_audit.parquet",
                   "application/vnd.apache.parquet", key="parquet")
