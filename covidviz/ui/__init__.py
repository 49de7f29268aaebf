"""Streamlit glue shared by the pages: cached resources and the common sidebar. No model logic here."""
