"""The audit trail: every prediction the dashboard, the CLI or the PACS connection gave, with the model
version that gave it, in a database (SQLite by default, any SQLAlchemy URL). Never images, never patient
identifiers.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__)
