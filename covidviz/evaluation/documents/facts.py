"""Facts the README and model card state, rendered from the artifacts (sidecars and ``metrics.json``).

The README holds a generated block between two markers; ``python -m covidviz facts`` rewrites it and a
test holds it equal to what these functions render from the shipped artifacts, so a number typed by
hand can never drift from the model that ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.documents.marked_block import MarkedBlock
from covidviz.evaluation.measures.report import format_interval
from covidviz.model.provenance import stage_text

BEGIN, END = "<!-- facts:begin (python -m covidviz facts) -->", "<!-- facts:end -->"
FACTS_BLOCK = MarkedBlock(BEGIN, END)

# (label, where in reads_the_lungs, target under the argmax rule)
HEADLINE = (
    ("Internal test macro F1", ("internal_test", "macro_f1"), ">= 0.90"),
    ("Internal test COVID-19 sensitivity", ("internal_test", "covid_sensitivity"), ">= 0.90"),
    ("Internal test COVID-19 precision", ("internal_test", "covid_precision"), ">= 0.90"),
    ("External: Hannover COVID-19 sensitivity", ("external", "hannover_covid_sensitivity"), ">= 0.90"),
    ("External: Shenzhen normals not called COVID-19 (specificity)", ("external", "shenzhen_specificity"),
     ">= 0.90"),
    ("External: COVID-19 ROC AUC, Hannover vs Shenzhen", ("external", "covid_roc_auc"), ""),
    ("Within SIIM (internal test): COVID-19 ROC AUC", ("within_source", "SIIM", "covid_roc_auc"), ">= 0.85"),
    ("Within ieee8023 (internal test): COVID-19 ROC AUC", ("within_source", "ieee8023", "covid_roc_auc"), ""),
)


def fmt_ci(metric: dict[str, Any] | None) -> str:
    """0.912 (0.880–0.940), or n/a when undefined."""
    if not metric or metric.get("value") is None:
        return "n/a"
    interval = format_interval(*metric.get("ci95", [None, None]))
    return f"{metric['value']:.3f} ({interval})" if interval else f"{metric['value']:.3f}"


def fmt_difference(difference: dict[str, Any] | None) -> str:
    """A paired difference as "+0.012 (−0.010 to +0.035)"; "reference" where there is none (the model itself)."""
    if not difference:
        return "reference"
    value, low, high = (round(v, 3) + 0.0 for v in (difference["value"], *difference["ci95"]))  # no "-0.000"
    return f"{value:+.3f} ({low:+.3f} to {high:+.3f})"


def _lookup(measures: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = measures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _energy(measures: dict[str, Any] | None) -> str:
    test = _lookup(measures, ("lung_energy", "test"))
    return "n/a" if not test or test.get("median") is None else f"{test['median']:.2f}"


def comparison_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: every headline measure for this model and the previous one, on the same rows."""
    now, before = metrics.get("reads_the_lungs"), metrics.get("previous")
    lines = ["| measure (argmax rule, 95% bootstrap CI) | target | this model | previous model |", "|---|---|---|---|"]
    for label, path, target in HEADLINE:
        lines.append(f"| {label} | {target} | {fmt_ci(_lookup(now, path))} | {fmt_ci(_lookup(before, path))} |")
    lines.append(f"| Median share of Grad-CAM energy inside the lungs (internal test) | >= 0.80 | {_energy(now)} | "
                 f"{_energy(before)} |")
    return lines


LUNG_SPLITS = (("val", "Validation"), ("test", "Internal test"), ("external", "External (Hannover, Shenzhen)"))


def _share(summary: dict[str, Any] | None, cls: str | None) -> str:
    value = None if not summary else summary.get("median") if cls is None else summary.get("by_class", {}).get(cls)
    return "—" if value is None else f"{value:.2f}"


def lung_energy_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: per split and true class, the median share of the predicted class's Grad-CAM energy inside
    the lungs for this model and the previous one, beside what a map spread evenly over the same masks puts
    there (the lungs' share of the field); [] for artifacts written before the even spread was recorded."""
    now, before = metrics.get("reads_the_lungs") or {}, metrics.get("previous") or {}
    energy, even = now.get("lung_energy") or {}, now.get("lung_area_share")
    if not even:
        return []
    lines = ["| split | true class | films with lungs | this model | even spread, same masks | previous model |",
             "|---|---|---|---|---|---|"]
    for split, title in LUNG_SPLITS:
        if split not in energy:
            continue
        previous = (before.get("lung_energy") or {}).get(split)
        for cls in (None, *(c for c in CLASSES if energy[split]["by_class"].get(c) is not None)):  # classes present
            lines.append(f"| {title if cls is None else ''} | {'all' if cls is None else CLASS_TITLES[cls]} | "
                         f"{energy[split]['n_with_lungs'] if cls is None else ''} | "
                         f"{_share(energy[split], cls)} | {_share(even.get(split), cls)} | {_share(previous, cls)} |")
    return lines


def counts_line(metrics: dict[str, Any]) -> str:
    measures = metrics.get("reads_the_lungs") or {}
    ext, test = measures.get("external", {}), measures.get("internal_test", {})
    siim = measures.get("within_source", {}).get("SIIM", {})
    return (f"Internal test: {test.get('n', 0):,} images; external: {ext.get('n_covid', 0):,} Hannover COVID-19 and "
            f"{ext.get('n_normal', 0):,} Shenzhen normal films; within SIIM: {siim.get('n_covid', 0):,} COVID-19 vs "
            f"{siim.get('n_other', 0):,} negative films.")


def segmenter_line(lungs: dict[str, Any] | None) -> str:
    if not lungs:
        return "No lung segmenter is shipped: the model reads whole images."
    test = lungs["test"]
    return (f"Lung segmenter ({lungs.get('name', 'U-Net')}, random initialisation): held-out masks n={test['n']}, "
            f"Dice {test['dice_mean']:.3f} (median {test['dice_median']:.3f}), IoU {test['iou_mean']:.3f}; "
            f"{lungs['cpu_ms_per_image_256px']} ms per 256 px image on {lungs.get('cpu_threads', '?')} CPU threads "
            "where it was trained.")


def data_line(sidecar: dict[str, Any]) -> str:
    """Images per split and class, from the sidecar's counts."""
    counts = sidecar["data"]["counts"]
    per_split = {name: sum(n for per in classes.values() for n in per.values()) for name, classes in counts.items()}
    per_class: dict[str, int] = {}
    for classes in counts.values():
        for label, per in classes.items():
            per_class[label] = per_class.get(label, 0) + sum(per.values())
    return (f"Pool images used: {sum(per_split.values()):,} ("
            + ", ".join(f"{label} {n:,}" for label, n in sorted(per_class.items())) + "), split by patient into "
            + ", ".join(f"{name} {n:,}" for name, n in per_split.items()) + f". Labels: {sidecar['data'].get('labels', 'as in metadata.csv')}.")


def model_line(sidecar: dict[str, Any]) -> str:
    training = sidecar["training"]
    stages = "; ".join(stage_text(s, detail=False) for s in training["stages"])
    title = sidecar.get("name", "covidviz DenseNet-121").removeprefix("covidviz ")
    return (f"Model `{sidecar['weights_sha256'][:12]}`: {title}, input {sidecar['input_size']} px, "
            f"initialisation: {sidecar['initialisation']}; stages: {stages}; {training.get('precision', '')}; "
            f"temperature {sidecar.get('temperature', 1.0):.3f} (validation).")


def readme_block(sidecar: dict[str, Any], metrics: dict[str, Any], lungs: dict[str, Any] | None) -> str:
    """The README's generated block (between the markers)."""
    previous = metrics.get("previous") or {}
    lines = [BEGIN, "", model_line(sidecar), "", data_line(sidecar), "", *comparison_table(metrics), "",
             counts_line(metrics) + (f" The previous model is `{previous.get('weights_sha256', '')[:12]}` "
                                     f"(`weights/{previous_folder(previous)}`), measured on the same rows with its "
                                     "own preprocessing." if previous else ""),
             "", segmenter_line(lungs), "", END]
    return "\n".join(lines)


def previous_folder(previous: dict[str, Any]) -> str:
    return f"history/{previous.get('folder', '')}"


def load_artifacts(weights_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The sidecar, ``metrics.json`` (with ``explanations.json`` under "explanations" and ``localisation.json``
    under "localisation" when explain-check has run, and ``decision.json`` under "decision" when fit-decision
    has, ``abstention.json``, ``lung_floor.json``, ``shift.json`` and ``ablation.json`` when measured) and the lung segmenter's sidecar (None when none is shipped)."""
    import json

    from covidviz.verified import read_sidecar
    metrics = json.loads((weights_dir / "eval" / "metrics.json").read_text())
    from covidviz.evaluation.explanation_check.explanations import explanations_path, load_explanations
    if explanations_path(weights_dir).is_file():  # the card's explanation section (explain-check)
        metrics["explanations"] = load_explanations(weights_dir)
    from covidviz.evaluation.explanation_check.localisation_report import load_localisation, localisation_path
    if localisation_path(weights_dir).is_file():  # the card's localisation section (explain-check --part localisation)
        metrics["localisation"] = load_localisation(weights_dir)
    from covidviz.evaluation.artifacts.decision_artifact import load_decision_report
    if (decision := load_decision_report(weights_dir)) is not None:  # the card's decision section (fit-decision)
        metrics["decision"] = decision
    from covidviz.evaluation.artifacts.abstention_artifact import load_abstention
    if (abstention := load_abstention(weights_dir)) is not None:  # the card's abstention section
        metrics["abstention"] = abstention
    from covidviz.evaluation.artifacts.lung_floor import load_lung_floor
    if (floor := load_lung_floor(weights_dir)) is not None:  # the card's OOD section (fit-lung-floor)
        metrics["lung_floor"] = floor
    from covidviz.evaluation.artifacts.age_artifact import pneumonia_by_age
    if by_age := pneumonia_by_age(weights_dir, read_sidecar(weights_dir)):  # from the saved predictions
        metrics["pneumonia_by_age"] = by_age
    from covidviz.evaluation.artifacts.shift_artifact import load_shift
    if (shift := load_shift(weights_dir)) is not None:  # the card's acquisition-shift section (measure-shift)
        metrics["shift"] = shift
    from covidviz.paths import HISTORY_DIR, latest_previous
    if (previous := latest_previous(weights_dir)) is not None and (before := load_shift(previous)) is not None:
        metrics["shift_previous"] = {**before, "folder": f"weights/{HISTORY_DIR}/{previous.name}"}
    from covidviz.evaluation.artifacts.ablation_artifact import load_ablation
    if (ablation := load_ablation(weights_dir)) is not None:  # the card's recipe ablation (scripts/recipe_ablation.py)
        metrics["ablation"] = ablation
    lungs_json = weights_dir / "lungs" / "model.json"
    return read_sidecar(weights_dir), metrics, json.loads(lungs_json.read_text()) if lungs_json.is_file() else None
