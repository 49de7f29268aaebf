"""The model card, rendered from the sidecar and ``metrics.json`` so it can never disagree with them."""

from __future__ import annotations

from typing import Any

from covidviz import CLASS_TITLES, CLASSES, DISCLAIMER
from covidviz.evaluation.artifacts.lung_floor import summary_lines as lung_floor_lines
from covidviz.evaluation.documents.ablation_facts import ablation_lines
from covidviz.evaluation.documents.decision_facts import abstention_lines, decision_lines, pneumonia_age_lines
from covidviz.evaluation.documents.facts import (
    comparison_table,
    counts_line,
    fmt_ci,
    lung_energy_table,
    segmenter_line,
)
from covidviz.evaluation.documents.shift_facts import shift_lines
from covidviz.evaluation.explanation_check.explanations import explanation_lines
from covidviz.evaluation.explanation_check.localisation_report import localisation_lines
from covidviz.model.provenance import stage_text

LICENCES = {
    "NIH": "NIH ChestX-ray14 (Wang et al., CVPR 2017): released without restriction",
    "Kermany": "Kermany et al., Cell 2018 (doi:10.17632/rscbjbr9sj): CC BY 4.0",
    "ieee8023": "ieee8023 COVID-19 image data collection (Cohen et al. 2020): licence per image, mostly NC/ND",
    "COVID-CXNet": "COVID-CXNet collection (Haghanifar et al.): rights unclear, evaluation/training only",
    "scrape": "Radiopaedia/Eurorad/SIRM scrape: rights unclear, evaluation/training only",
    "Hannover": "Hannover Medical School COVID-19 repository: CC BY 3.0 (doi:10.6084/m9.figshare.12275009)",
    "SIIM": "SIIM-FISABIO-RSNA COVID-19 (BIMCV-COVID19+, MIDRC-RICORD): competition data for research use",
    "Montgomery": "Montgomery County TB set (NLM): research use, not redistributed",
    "DA/DB": "DA/DB TB sets (Chauhan et al. 2014): rights unclear, training/evaluation only",
    "Shenzhen": "Shenzhen No.3 People's Hospital TB set (NLM): research use, external evaluation only",
}


def _counts_table(counts: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    sources = sorted({s for split in counts.values() for per in split.values() for s in per})
    lines = ["| split | class | " + " | ".join(sources) + " | total |", "|---|---|" + "---|" * (len(sources) + 1)]
    for split, per_class in counts.items():
        for label in CLASSES:
            row = per_class.get(label, {})
            lines.append(f"| {split} | {label} | " + " | ".join(str(row.get(s, 0)) for s in sources)
                         + f" | {sum(row.values())} |")
    return lines


def _metrics_rows(name: str, report: dict[str, Any]) -> str:
    s, covid = report["summary"], report["per_class"]["covid"]
    return (f"| {name} | {report['n']} | {fmt_ci(s['accuracy'])} | {fmt_ci(s['macro_f1'])} | "
            f"{fmt_ci(covid['sensitivity'])} | {fmt_ci(covid['precision'])} | {fmt_ci(covid['roc_auc'])} |")


def _within_source_lines(metrics: dict[str, Any] | None) -> list[str]:
    """The confounding test: how well COVID-19 is told apart *within* a source that holds several classes."""
    if not metrics or "test" not in metrics.get("splits", {}):
        return []
    out = []
    for source, report in metrics["splits"]["test"]["by_source"].items():
        counts = report["class_counts"]
        if counts.get("covid", 0) and sum(counts.values()) > counts["covid"]:
            auc = report["per_class"]["covid"]["roc_auc"]
            overall = metrics["splits"]["test"]["overall"]["per_class"]["covid"]["roc_auc"]
            if auc["value"] is None or overall["value"] is None:
                continue
            verdict = ("Within one source the model separates COVID-19 far less well."
                       if auc["value"] < overall["value"] - 0.1 else "Within one source:")
            out.append(f"- **{verdict}** Internal test, {source} "
                       f"only ({counts['covid']} COVID-19 vs {sum(counts.values()) - counts['covid']} other): COVID-19 "
                       f"ROC AUC {fmt_ci(auc)}, against {fmt_ci(overall)} over all sources"
                       + (": much of the overall figure comes from telling sources apart." if verdict.startswith("Within one source the")
                          else "."))
    return out


def _total_training_images(sidecar: dict[str, Any]) -> int:
    return sum(n for per_source in sidecar["data"]["counts"].get("train", {}).values() for n in per_source.values())


def _reads_the_lungs(metrics: dict[str, Any] | None, lungs: dict[str, Any] | None) -> list[str]:
    if not metrics or "reads_the_lungs" not in metrics:
        return []
    found = metrics["reads_the_lungs"].get("lung_field_found") or {}
    return ["## Does it read the lungs? This model and the previous one on the same rows", *comparison_table(metrics),
            "", counts_line(metrics), "",
            *([f"Lung fields were found for {', '.join(f'{v:.1%} of {k}' for k, v in found.items())}; the rest "
               "were read whole and flagged."] if found else []),
            segmenter_line(lungs), "", *_lung_energy_section(metrics)]


def _lung_energy_section(metrics: dict[str, Any]) -> list[str]:
    table = lung_energy_table(metrics)
    if not table:
        return []
    return ["Where the maps fall, per split and true class: the median share of the predicted class's Grad-CAM "
            "energy inside the lung mask, over the films whose lungs were found, beside the share a map spread "
            "evenly over the same masks puts there. A map above the even spread gathers in the lungs; one below it "
            "favours what lies around them.", "", *table, ""]


def render_model_card(sidecar: dict[str, Any], metrics: dict[str, Any] | None,
                      lungs: dict[str, Any] | None = None) -> str:
    training = sidecar["training"]
    random_init = str(sidecar["initialisation"]).startswith("random")
    lines = [
        f"# Model card: {sidecar['name']}",
        "",
        f"Version `{sidecar['weights_sha256'][:12]}` (weights sha256 `{sidecar['weights_sha256']}`), "
        f"code commit `{sidecar.get('code_commit', 'unknown')}`.",
        "",
        "## Intended use",
        f"{DISCLAIMER} It sorts a frontal chest radiograph into "
        + ", ".join(CLASS_TITLES[c] for c in CLASSES)
        + " and shows where it looked (Grad-CAM). It is not for diagnosis, triage without a reader, lateral views, "
          "CT, children under one year, or any population unlike the training data below.",
        "",
        "## How it was made",
        f"- Architecture: {sidecar['name'].removeprefix('covidviz ')} (`{sidecar.get('architecture', 'densenet121')}`, "
        f"torchvision's, forward without in-place ReLU), {len(CLASSES)} classes, "
        f"input {sidecar['input_size']} px, grayscale replicated to 3 channels.",
        f"- Initialisation: **{sidecar['initialisation']}**. No pretrained weights could be reached where it was "
        "trained, so every weight was learned from the pool below"
        + ("." if random_init else ", in the stages listed (the first from random initialisation)."),
        "- Stages: " + "; ".join(stage_text(s) for s in training["stages"]) + ".",
        f"- Sampling: {training['sampling']}. Augmentation: {training['augmentation']}. Loss: cross-entropy with "
        "label smoothing; early stopping on validation macro F1.",
        f"- Preprocessing: {sidecar['preprocessing']['canonical']}; {sidecar['preprocessing']['model_input']}.",
        f"- Precision: {training.get('precision', 'see stages')}. Labels: "
        f"{sidecar['data'].get('labels', 'as in metadata.csv')}.",
        *(f"- Note: {note}" for note in training.get("notes", [])),
        f"- Calibration: temperature {sidecar.get('temperature', 1.0):.3f}, fitted on the validation split only.",
        f"- Split: by patient (`split_group`), stratified by class and source, seed {sidecar['data']['split_seed']}; "
        + ("earlier patients kept their side of the previous model's split; " if sidecar["data"].get(
            "previous_split_kept") else "")
        + "the external sets (Hannover, Shenzhen) were never used for training, checkpoint choice, temperature or "
          "thresholds.",
        "",
        "## Data (images per split, class and source)",
        *_counts_table(sidecar["data"]["counts"]),
        "",
        "Licences: " + "; ".join(LICENCES.values()) + ".",
        "",
    ]
    lines += _reads_the_lungs(metrics, lungs)
    if metrics:
        lines += ["## Results (95% bootstrap CIs; argmax rule, calibrated probabilities)",
                  "| set | n | accuracy | macro F1 | COVID sensitivity | COVID precision | COVID ROC AUC |",
                  "|---|---|---|---|---|---|---|"]
        for split in metrics["splits"].values():
            lines.append(_metrics_rows(f"**{split['title']}**", split["overall"]))
            for source, report in split["by_source"].items():
                lines.append(_metrics_rows(f"{split['title']}: {source}", report))
        lines += ["", "On the external sets, read COVID-19 sensitivity on Hannover (COVID-19 only) and specificity on "
                  "Shenzhen (normals only); their pooled precision depends on the mix of the two sets.", ""]
        ood = metrics.get("ood")
        if ood:
            def parts(v: dict[str, Any], digits: int) -> str:
                if "rate_lung_check_only" not in v or not ood.get("lung_check"):
                    return ""
                colour = (f", colour picture alone {v['rate_colour_check_only']:.{digits}%}"
                          if "rate_colour_check_only" in v else "")
                return (f"; distance alone {v['rate_distance_only']:.{digits}%}, no plausible lungs alone "
                        f"{v['rate_lung_check_only']:.{digits}%}{colour}")
            det = "; ".join(f"{k}: {v['rate']:.0%} of {v['n']} (leave-one-out {v['rate_leave_one_out']:.0%}"
                            f"{parts(v, 0)})" for k, v in ood["detection"].items())
            alarms = "; ".join(f"{k}: {v['rate']:.1%} of {v['n']} ({parts(v, 1).removeprefix('; ') or 'distance'})"
                               for k, v in ood["false_alarm"].items())
            caution = "; ".join(f"{k}: {v:.1%}" for k, v in ood["caution_rate"].items())
            lines += ["## Out-of-distribution guard",
                      f"{ood['method']}. An upload is flagged as not meaningful above {ood['threshold']:.1f} "
                      f"({ood['threshold_rule']}) and gets a caution above {ood['caution']:.1f} ({ood['caution_rule']})"
                      + (f"; it is also flagged when {ood['lung_check'].removeprefix('flagged too when ')}"
                         if ood.get("lung_check") else "")
                      + (f", and when {ood['colour_check'].removeprefix('flagged too when ')}."
                         if ood.get("colour_check") else "."),
                      f"- Non-chest images flagged: {det}.",
                      f"- Real chest X-rays flagged (false alarms): {alarms}.",
                      f"- Real chest X-rays with a caution: {caution}. The Hannover hospital is new to the model, "
                      "and the guard says so.",
                      *lung_floor_lines(metrics.get("lung_floor")), ""]
    lines += decision_lines((metrics or {}).get("decision"))
    lines += pneumonia_age_lines((metrics or {}).get("pneumonia_by_age"))
    lines += abstention_lines((metrics or {}).get("abstention"))
    lines += shift_lines((metrics or {}).get("shift"), (metrics or {}).get("shift_previous"), sidecar["weights_sha256"])
    lines += explanation_lines((metrics or {}).get("explanations"), sidecar["weights_sha256"])
    lines += localisation_lines((metrics or {}).get("localisation"), sidecar["weights_sha256"])
    lines += ablation_lines((metrics or {}).get("ablation"), sidecar["weights_sha256"])
    lines += [
        "## Known limitations",
        *_within_source_lines(metrics),
        "- **Source confounding.** Classes still lean on collections: pneumonia is mostly Kermany (children aged 1-5) "
        "and NIH (adults); non-SIIM COVID-19 images are mostly figures from publications. A model can score well by "
        "recognising the collection, the age or burnt-in annotations rather than disease; the within-SIIM and "
        "external rows above are the honest tests.",
        "- Pediatric images are all non-COVID; figures from publications may carry arrows, text and crops.",
        "- Each external set holds one class from one hospital: Hannover measures sensitivity, Shenzhen "
        "specificity; neither measures pneumonia.",
        "- NIH labels were mined from reports and are noisy; NIH pneumonia versus normal is hard even for experts.",
        f"- {'Trained from random initialisation' if random_init else 'Trained without pretrained weights'} on "
        f"{_total_training_images(sidecar):,} training images: far less than clinical models see.",
    ]
    return "\n".join(lines) + "\n"
