"""The model card's section on the decision rule, rendered from ``weights/eval/decision.json`` (fit-decision)."""

from __future__ import annotations

from typing import Any

from covidviz.evaluation.documents.facts import fmt_ci

SET_TITLES = {"val": "Validation (fitted here)", "test": "Internal test", "Hannover": "External: Hannover (COVID-19 only)",
              "Shenzhen": "External: Shenzhen (normals only)"}
RULE_TITLES = {"covid_threshold": "screening threshold", "argmax": "argmax"}
FOLD_MEASURES = {"test_sensitivity": "internal test sensitivity", "test_specificity": "internal test specificity",
                 "hannover_sensitivity": "Hannover sensitivity", "shenzhen_specificity": "Shenzhen specificity"}


def _mean_sd(v: dict[str, Any]) -> str:
    if v.get("mean") is None:
        return "n/a"
    return f"{v['mean']:.3f} ± {v['sd']:.3f}" if v.get("sd") is not None else f"{v['mean']:.3f}"


def abstention_lines(summary: dict[str, Any] | None) -> list[str]:
    """Markdown: how often no class is given on each set, by which check, and how many of those films the
    decision rule would have called right; nothing before measure-abstention has run."""
    if not summary:
        return []
    lines = ["## No class where there is none to give",
             f"An image gets no class when its feature distance is above the OOD guard's threshold "
             f"({summary['ood_threshold']:.1f}) or no plausible pair of lungs is found. On the evaluation films "
             "(all real chest radiographs, so every abstention here costs an answer; a film may fail both checks):", "",
             "| set | n | no class given | out of distribution | no plausible lungs | of those, the rule had right | "
             "accuracy on the rest |", "|---|---|---|---|---|---|---|"]
    for name, s in summary["sets"].items():
        rest = "n/a" if s["answered_accuracy"] is None else f"{s['answered_accuracy']:.3f}"
        lines.append(f"| {SET_TITLES.get(name, name).removesuffix(' (fitted here)')} | {s['n']} | {s['abstained']} "
                     f"({s['rate']:.1%}) | {s['out_of_distribution']} | {s['no_plausible_lungs']} | "
                     f"{s['abstained_right']} of {s['abstained']} | {rest} |")
    return [*lines, ""]


def decision_lines(report: dict[str, Any] | None) -> list[str]:
    """Markdown: the rule, then COVID-19 sensitivity and specificity with 95% bootstrap intervals for the rule and
    for argmax on each set, then mean ± SD over the cross-validation folds; nothing before fit-decision has run."""
    if not report:
        return []
    lines = ["## Decision rule (operating point)",
             f"Every class shown or written (Diagnose, `predict`, `batch`, the DICOM SR, the audit log) follows one "
             f"rule: {report['description']}. The threshold {report['covid_threshold']:.4f} calls COVID-19 on the "
             "validation films that the highest threshold keeping validation COVID-19 sensitivity at least "
             f"{report['target_sensitivity']:.2f} calls (the most specific such rule), and sits halfway between two "
             "validation films' probabilities, so that no validation film's call rests on float noise; it was fitted "
             "on validation predictions only, never on the test or external sets. "
             "No class is given at all when the input is out of distribution or no plausible pair of lungs is found.",
             "",
             "| set | n | rule | COVID-19 sensitivity (95% CI) | COVID-19 specificity (95% CI) |",
             "|---|---|---|---|---|"]
    for split, both in report["splits"].items():
        for rule in ("covid_threshold", "argmax"):
            r = both[rule]
            lines.append(f"| {SET_TITLES.get(split, split)} | {r['n']} | {RULE_TITLES[rule]} | "
                         f"{fmt_ci(r['sensitivity'])} | {fmt_ci(r['specificity'])} |")
    cv = report.get("cross_validation")
    if cv:
        summary = cv["summary"]
        lines += ["", f"Across the {len(cv['folds'])} cross-validation folds (each fold's threshold fitted on its own "
                  f"validation rows: mean {_mean_sd(summary['threshold'])}), mean ± SD:", "",
                  "| measure | screening threshold | argmax |", "|---|---|---|"]
        lines += [f"| {title} | {_mean_sd(summary['covid_threshold'][m])} | {_mean_sd(summary['argmax'][m])} |"
                  for m, title in FOLD_MEASURES.items()]
    return [*lines, ""]


def pneumonia_age_lines(report: dict[str, Any] | None) -> list[str]:
    """Markdown: pneumonia recall for adults and for children, per set and rule, with Wilson 95% intervals."""
    if not report:
        return []
    def cell(r: dict[str, Any] | None) -> str:
        return "n/a" if r is None else (f"{r['recalled']} of {r['n']} ({r['value']:.3f}, "
                                        f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})")
    first = next(iter(next(iter(report.values())).values()))
    names = {g: f"{g} ({', '.join(r['sources'])})" for g, r in first.items()}
    lines = ["## Pneumonia recall, adults and children apart",
             "The pool's pneumonia class is mostly children (Kermany, aged 1 to 5), so a pooled pneumonia recall "
             "mostly measures how well the model knows a child's chest. Adult pneumonia that is not COVID-19 is "
             "shown apart (the age group comes from the source; Wilson 95% intervals):", "",
             "| set | rule | " + " | ".join(names.values()) + " |", "|---|---|" + "---|" * len(names)]
    for split, rules in report.items():
        for rule, groups in rules.items():
            lines.append(f"| {SET_TITLES.get(split, split).removesuffix(' (fitted here)')} | {RULE_TITLES[rule]} | "
                         + " | ".join(cell(groups.get(g)) for g in names) + " |")
    return [*lines, ""]
