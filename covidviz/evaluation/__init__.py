"""Evaluation: metrics with bootstrap intervals, calibration, operating points, the artifacts in
``weights/eval/`` that the pages read, the model card and the error gallery.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    evaluate=("evaluate",),
    artifacts=("load_predictions", "load_metrics"),
    report=("metrics_report",),
    calibration=("fit_temperature",),
    operating_point=("OperatingPoint",),
    model_card=("render_model_card",),
    gallery=("misclassified", "build_gallery"),
)
