"""The audit trail: every prediction the dashboard, the CLI or the PACS connection gave, with the model
version that gave it, in a database (SQLite by default, any SQLAlchemy URL). Never images, never patient
identifiers.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    models=("AuditRecord",),
    vocabulary=("INTERFACES", "KINDS", "OOD_LEVELS"),
    db=("database_url", "migrate", "get_engine", "dispose"),
    events=("AuditEvent", "content_sha256", "event_from_result", "flags_from_warnings"),
    recorder=("AuditRecorder", "get_recorder", "flush_all", "write_events", "record_prediction",
              "record_rejection", "record_heatmap", "record_outcome", "record_results", "record_access"),
    identity=("Actor", "act_as", "current_actor", "os_actor"),
    query=("AuditFilter", "load_records", "filter_records", "display_table", "counts_over_time", "score_summary",
           "summary_text", "export_records", "to_csv_bytes", "to_parquet_bytes", "neutralise_formula"),
)
