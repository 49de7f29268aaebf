"""Evaluation: metrics with bootstrap intervals, calibration, operating points, the artifacts in
``weights/eval/`` that the pages read, the model card, the error gallery and the backbone comparison.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    evaluate=("evaluate",),
    artifacts=("load_predictions", "load_metrics", "load_comparison"),
    comparison=("paired_difference", "crossval_summary", "model_entry"),
    run_eval=("evaluate_run",),
    report=("metrics_report",),
    calibration=("fit_temperature",),
    operating_point=("OperatingPoint",),
    model_card=("render_model_card",),
    gallery=("misclassified", "build_gallery"),
)
