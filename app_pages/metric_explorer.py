"""Metric explorer: one class against the rest, at any threshold and prevalence, from weights/eval/ only."""

from covidviz.model.decision import rule_from_sidecar
from covidviz.ui.eval_page import start_eval_page
from covidviz.ui.metric_explorer_view import (
    render_calibration,
    render_curves,
    render_decision_rule,
    render_metrics,
    render_selection,
)
from covidviz.ui.resources import weights_dir
from covidviz.verified import read_sidecar

metrics = start_eval_page("Metric explorer")
selection = render_selection(metrics, weights_dir())
point, threshold = render_decision_rule(selection, rule_from_sidecar(read_sidecar(weights_dir())))
render_metrics(selection, point, threshold)
render_curves(selection, point, threshold)
render_calibration(metrics, selection)
