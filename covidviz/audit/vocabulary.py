"""The audit log's fixed words, importable without SQLAlchemy (the CLI's parser needs them at start-up)."""

INTERFACES = ("dashboard", "cli", "pacs", "batch")
# the model's outputs, then the dashboard's sign-in events (covidviz.ui.guard): who came in, who left, whose
# idle session was ended, and every page or action a user's role did not allow
RESULT_KINDS = ("prediction", "rejection", "heatmap")
ACCESS_KINDS = ("sign_in", "sign_out", "session_timeout", "access_refused")
KINDS = RESULT_KINDS + ACCESS_KINDS
OOD_LEVELS = ("typical", "unusual", "outlier")  # None: the model has no guard, so nobody checked
