"""Explanations: class activation maps (:mod:`covidviz.explain.cam`), overlays, one X-ray read as the
Diagnose page shows it, and the case report.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "Reading": "reading",
    "read_xray": "reading",
    "heatmap": "reading",
    "heatmap_on_original": "reading",
    "blend": "overlay",
    "contour": "overlay",
    "case_report_html": "case_report",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
