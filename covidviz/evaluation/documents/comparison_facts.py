"""The README's generated comparison block, from ``weights/comparison/comparison.json`` only; ``compare-build``
and ``facts`` write it, and a test holds it equal to the artifact."""

from __future__ import annotations

from typing import Any

from covidviz.evaluation.documents.facts import fmt_ci, fmt_difference
from covidviz.evaluation.documents.marked_block import MarkedBlock
from covidviz.evaluation.measures.comparison import candidate_models

BEGIN, END = "<!-- comparison:begin (python -m covidviz compare-build) -->", "<!-- comparison:end -->"
COMPARISON_BLOCK = MarkedBlock(BEGIN, END)


def comparison_block(report: dict[str, Any]) -> str:
    """Markdown between the markers: one row per model, the cross-validation summary, the recipe."""
    candidates = candidate_models(report)
    lines = [BEGIN, "", f"Comparison models (reduced recipe), {report['recipe']['name']}: "
             f"{report['recipe']['description']}."
             + "".join(f" {m['title']}: {m['recipe']}." for m in candidates), "",
             "| model | params (M) | internal test macro-F1 | Δ vs shipped (paired) | external macro-F1 | "
             "Δ vs shipped (paired) | ms, batch 1 | img/s |", "|---|---|---|---|---|---|---|---|"]
    for m in report["models"]:
        difference = m.get("macro_f1_difference") or {}
        lines.append(f"| {m['title']} | {m['parameters'] / 1e6:.1f} | {fmt_ci(m['splits']['test']['macro_f1'])} | "
                     f"{fmt_difference(difference.get('test'))} | {fmt_ci(m['splits']['external']['macro_f1'])} | "
                     f"{fmt_difference(difference.get('external'))} | {m['latency_ms_batch1']:.1f} | "
                     f"{m['throughput_img_s_batch32']:.1f} |")
    cv = report.get("cross_validation")
    if cv:
        s = cv["summary"]["test"]
        lines += ["", f"Cross-validation of the DenseNet-121 ({cv['finished']} of {cv['n_folds']} patient-level folds, "
                      f"{cv['recipe']}), mean ± SD over folds on held-out patients: macro-F1 "
                      f"{s['macro_f1']['mean']:.3f} ± {s['macro_f1']['std']:.3f}, COVID-19 sensitivity "
                      f"{s['covid_sensitivity']['mean']:.3f} ± {s['covid_sensitivity']['std']:.3f}, specificity "
                      f"{s['covid_specificity']['mean']:.3f} ± {s['covid_specificity']['std']:.3f}."]
    lines += ["", END]
    return "\n".join(lines)

