"""The audit log's fixed words, importable without SQLAlchemy (the CLI's parser needs them at start-up)."""

INTERFACES = ("dashboard", "cli", "pacs", "batch")
KINDS = ("prediction", "rejection", "heatmap")
OOD_LEVELS = ("typical", "unusual", "outlier")  # None: the model has no guard, so nobody checked
