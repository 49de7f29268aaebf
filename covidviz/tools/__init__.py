"""Command-line tools for ML engineers: ``python -m covidviz train|evaluate|predict|bench|...``.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "main": "cli",
    "run_predict": "predict",
    "run_bench": "bench",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
