"""Explanations: class activation maps (:mod:`covidviz.explain.cam`), overlays, one X-ray read as the
Diagnose page shows it, and the case report.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    reading=("Reading", "read_xray", "heatmap", "heatmap_on_original"),
    overlay=("blend", "contour"),
    case_report=("case_report_html",),
)
