"""``python -m covidviz fit-decision``: fit the decision rule on validation, record it, report it.

Reads only the saved predictions (``weights/eval/*_predictions.csv``, and each cross-validation fold's under
``weights/comparison/cv/fold-*/eval/``): no model runs. The threshold is chosen on the validation split alone;
internal test, the external sets and the folds' test and external rows are only measured. Writes the rule into
the sidecar (``"decision"``, read by :func:`covidviz.model.decision.rule_from_sidecar`) and the report to
``weights/eval/decision.json``, from which the model card's table is generated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidviz.evaluation.artifacts.saved import SplitPredictions, eval_dir, load_predictions
from covidviz.evaluation.measures.decision_fit import (
    SCREENING_SENSITIVITY,
    both_rules,
    covid_rates,
    fit_rule,
    mean_sd,
)
from covidviz.model.decision import ARGMAX_RULE, COVID_THRESHOLD, DECISION_KEY, DecisionRule
from covidviz.model.sidecar import update_sidecar
from covidviz.paths import COMPARISON_DIR

DECISION_FILE = "decision.json"
EXTERNAL_SOURCES = {"Hannover": "sensitivity", "Shenzhen": "specificity"}  # each holds one class only
CV_DIR = "cv"


def decision_path(weights_dir: str | Path) -> Path:
    return eval_dir(weights_dir) / DECISION_FILE


def load_decision_report(weights_dir: str | Path) -> dict[str, Any] | None:
    """``weights/eval/decision.json``, or None before ``fit-decision`` has run."""
    path = decision_path(weights_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def _rows(weights_dir: Path) -> dict[str, SplitPredictions]:
    """The rows the rule is measured on: validation, internal test and each external set on its own."""
    external = load_predictions(weights_dir, "external")
    return {"val": load_predictions(weights_dir, "val"), "test": load_predictions(weights_dir, "test"),
            **{source: external.subset(source) for source in EXTERNAL_SOURCES}}


def _fold_figures(fold_dir: Path, target: float) -> dict[str, Any]:
    """One fold: its own threshold from its own validation rows, both rules' figures on its test and external
    rows (point values; the spread across folds is the interval that matters here)."""
    rows = _rows(fold_dir)
    fitted = fit_rule(rows["val"].y_true, rows["val"].probs, target)
    out: dict[str, Any] = {"threshold": fitted.covid_threshold}
    for name, rule in ((COVID_THRESHOLD, fitted), ("argmax", ARGMAX_RULE)):
        rates = {split: covid_rates(rule, rows[split].y_true, rows[split].probs)["covid"] for split in rows}
        out[name] = {"test_sensitivity": rates["test"]["sensitivity"], "test_specificity": rates["test"]["specificity"],
                     "hannover_sensitivity": rates["Hannover"]["sensitivity"],
                     "shenzhen_specificity": rates["Shenzhen"]["specificity"]}
    return out


def cross_validation(weights_dir: Path, target: float) -> dict[str, Any] | None:
    """Per fold and mean ± SD over the folds found under ``comparison/cv`` (None when there are none)."""
    folds = sorted(p for p in (weights_dir / COMPARISON_DIR / CV_DIR).glob("fold-*")
                   if (eval_dir(p) / "val_predictions.csv").is_file())
    if not folds:
        return None
    per_fold = {p.name: _fold_figures(p, target) for p in folds}
    first = next(iter(per_fold.values()))
    summary = {rule: {m: mean_sd([f[rule][m] for f in per_fold.values()]) for m in first[rule]}
               for rule in (COVID_THRESHOLD, "argmax")}
    summary["threshold"] = mean_sd([f["threshold"] for f in per_fold.values()])
    return {"folds": per_fold, "summary": summary}


def fit_decision(weights_dir: str | Path, target: float = SCREENING_SENSITIVITY, n_boot: int = 1000
                 ) -> dict[str, Any]:
    """Fit on validation, write ``decision.json`` and the sidecar's ``"decision"``; return the report."""
    weights_dir = Path(weights_dir)
    rows = _rows(weights_dir)
    rule: DecisionRule = fit_rule(rows["val"].y_true, rows["val"].probs, target)
    report = {"rule": rule.name, "covid_threshold": rule.covid_threshold, "target_sensitivity": target,
              "fitted_on": "validation",
              "description": rule.description,
              "splits": {name: both_rules(rule, p.y_true, p.probs, n_boot) for name, p in rows.items()},
              "cross_validation": cross_validation(weights_dir, target), "n_boot": n_boot}
    decision_path(weights_dir).write_text(json.dumps(report, indent=2) + "\n")
    val = report["splits"]["val"][COVID_THRESHOLD]
    update_sidecar(weights_dir, **{DECISION_KEY: {
        "rule": rule.name, "covid_threshold": rule.covid_threshold, "fitted_on": "validation",
        "target_sensitivity": target, "validation_sensitivity": val["sensitivity"]["value"],
        "validation_specificity": val["specificity"]["value"], "n_validation": val["n"],
        "report": f"eval/{DECISION_FILE}"}})
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the command prints: the threshold and each set's figures beside argmax's."""
    def fmt(m: dict[str, Any]) -> str:
        if m["value"] is None:
            return "n/a"
        lo, hi = m["ci95"]
        return f"{m['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
    lines = [f"rule: {report['description']} (COVID-19 threshold {report['covid_threshold']:.4f}, fitted on "
             f"validation for sensitivity >= {report['target_sensitivity']:.2f})"]
    for split, both in report["splits"].items():
        for rule in (COVID_THRESHOLD, "argmax"):
            r = both[rule]
            lines.append(f"  {split:9s} {rule:15s} n={r['n']:5d} COVID-19 sensitivity {fmt(r['sensitivity'])} "
                         f"specificity {fmt(r['specificity'])}")
    cv = report.get("cross_validation")
    if cv:
        for rule in (COVID_THRESHOLD, "argmax"):
            parts = [f"{m} {v['mean']:.3f} ± {v['sd']:.3f}" for m, v in cv["summary"][rule].items()
                     if v["mean"] is not None and v["sd"] is not None]
            lines.append(f"  {len(cv['folds'])} folds, {rule}: " + "; ".join(parts))
    return lines
