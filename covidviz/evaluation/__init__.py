"""Evaluation: metrics with bootstrap intervals, calibration, operating points, the artifacts in
``weights/eval/`` that the pages read, the model card and the error gallery.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "evaluate": "evaluate",
    "load_predictions": "artifacts",
    "load_metrics": "artifacts",
    "metrics_report": "report",
    "fit_temperature": "calibration",
    "OperatingPoint": "operating_point",
    "render_model_card": "model_card",
    "misclassified": "gallery",
    "build_gallery": "gallery",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
