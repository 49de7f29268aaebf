"""Evaluation, in four kinds: ``measures/`` (metrics with bootstrap intervals, calibration, operating points,
the lung measures, the comparison's numbers), ``artifacts/`` (what ``evaluate`` writes to ``weights/eval/``
and the pages read back, the error gallery), ``documents/`` (README facts, model card, comparison facts) and
``explanation_check/`` (how far each heatmap method can be trusted).
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    **{
        "artifacts.evaluate": ("evaluate",),
        "artifacts.saved": ("load_predictions", "load_metrics", "load_comparison"),
        "artifacts.run_eval": ("evaluate_run",),
        "artifacts.gallery": ("misclassified", "build_gallery"),
        "measures.comparison": ("paired_difference", "crossval_summary", "model_entry"),
        "measures.report": ("metrics_report",),
        "measures.calibration": ("fit_temperature",),
        "measures.operating_point": ("OperatingPoint",),
        "documents.model_card": ("render_model_card",),
    },
)
