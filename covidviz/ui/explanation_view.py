"""Words, tables and the figure of the Explanation quality page, from ``explanations.json`` only.

No Streamlit here: the page stays thin and the tests compare every number it shows with the file.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.explanation_check.explanations import (
    faithfulness_ranking,
    fmt_interval,
    road_label,
    stage_value,
    verdict_stage,
    verdict_word,
)

INTRO = (
    "A heatmap invites trust it may not deserve. Three checks say how far each method can be trusted **on this "
    "model**: whether its maps depend on what the model learned (they should change when the weights are "
    "randomised: Adebayo et al. 2018), whether the pixels it ranks highest are the ones the prediction rests on "
    "(ROAD: Rong et al. 2022), and how much of it falls on the lungs.")

ROAD_HOW = (
    "**ROAD** removes a share of the pixels in the order the map ranks them and fills them in from their "
    "neighbours (noisy linear imputation, so the hole leaves no shape to read), then measures the change in the "
    "calibrated probability of the explained class. Most relevant first (MoRF) should make it fall; least "
    "relevant first (LeRF) should leave it. The combined score, (LeRF − MoRF) / 2 averaged over the levels, is "
    "higher for a more faithful map; the edge control shows what image structure alone earns.")

RANDOMISATION_HOW = (
    "**Randomisation cascade.** The network is re-initialised from the top down (first the classifier head, then "
    "each dense block with the layers above it) and each method's map for the same image and class is compared "
    "with the trained model's map: Spearman rank correlation (1: same ranking of pixels) and SSIM (1: same "
    "structure). A method whose maps keep their layout without the learned weights is showing the image, not "
    "the model. The edge control (Sobel edges of the input, no model at all) must fail; it does by construction.")


def _names(report: dict[str, Any], with_controls: bool = True) -> list[str]:
    return list(report["methods"]) + (list(report.get("controls", {})) if with_controls else [])


def _section(report: dict[str, Any], name: str) -> dict[str, Any]:
    return report["methods"].get(name) or report["controls"][name]


def randomisation_words(report: dict[str, Any]) -> str:
    """Which methods pass, which fail, in one paragraph."""
    sections = report["methods"]
    passed = [m for m, s in sections.items() if s["verdict"] == "pass"]
    failed = [m for m, s in sections.items() if s["verdict"] == "fail"]
    not_run = [m for m, s in sections.items() if s["verdict"] == "not run"]
    uncertain = [m for m in passed + failed if not sections[m]["verdict_certain"]]
    stage = verdict_stage(report)
    text = (f"**Pass the randomisation test:** {', '.join(passed) or 'none'}. "
            f"**Fail:** {', '.join(failed) or 'none'}.")
    if failed:
        text += (f" A failed method's maps still resemble the trained model's after the network is randomised down "
                 f"to {stage} or further: read them as a picture of the image, not of the model's reasoning.")
    if uncertain:
        text += (f" Uncertain on this many images (the 95% interval crosses {report['verdict_threshold']}): "
                 f"{', '.join(uncertain)}.")
    if not_run:
        text += f" Not checked: {', '.join(not_run)}."
    return text


def faithfulness_words(report: dict[str, Any]) -> str:
    """The methods ranked by ROAD, against the edge control."""
    ranked = [m for m in faithfulness_ranking(report) if report["methods"][m]["road"]["combined"]["mean"] is not None]
    if not ranked:
        return "No ROAD scores were computed."
    scores = ", ".join(road_label(report, m) for m in ranked)
    text = f"**Most faithful (ROAD, combined score):** {scores}."
    for name, control in report.get("controls", {}).items():
        value = control["road"]["combined"]["mean"]
        if value is None:
            continue
        below = [m for m in ranked if report["methods"][m]["road"]["combined"]["mean"] <= value]
        text += f" The {name} map scores {value:+.3f}"
        text += (f"; {', '.join(below)} {'does' if len(below) == 1 else 'do'} no better than image edges."
                 if below else "; every method's mean is above it.")
    return text


def lung_words(report: dict[str, Any]) -> str:
    """Where the model looks: median share of each method's energy inside the lungs against an even spread."""
    area = report.get("lung_area_share", {}).get("median")
    parts = [f"{m} {s['lung_energy']['median']:.0%}" for m, s in report["methods"].items()
             if s["lung_energy"]["median"] is not None]
    if not parts:
        return "No lung outlines were found on the sampled images, so lung focus was not measured."
    text = f"**Where the model looks:** median share of the map's energy inside the lungs: {', '.join(parts)}."
    if area is not None:
        shares = [s["lung_energy"]["median"] for s in report["methods"].values() if s["lung_energy"]["median"] is not None]
        text += (f" A map spread evenly over the image the model reads would put {area:.0%} there (the lungs' "
                 f"share of that image): the methods lean {100 * (min(shares) - area):+.0f} to "
                 f"{100 * (max(shares) - area):+.0f} percentage points toward the lungs, and at the median "
                 f"{1 - max(shares):.0%} to {1 - min(shares):.0%} of a map lies outside them.")
    return text


def overview_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per method (controls last): verdict and its deciding stage's correlation and SSIM, ROAD, lung
    energy, seconds per map and images, as the numbers stored in the file."""
    rows = []
    for name in _names(report):
        s = _section(report, name)
        deciding = s["deciding_stage"]
        rho = (stage_value(s, deciding) or {}) if deciding else {}
        ssim = (stage_value(s, deciding, "ssim") or {}) if deciding else {}
        rows.append({"method": name, "randomisation": verdict_word(s), "deciding stage": deciding or "",
                     "rank corr.": rho.get("mean"), "rank corr. 95% CI": fmt_interval(rho),
                     "SSIM": ssim.get("mean"),
                     "ROAD combined": s["road"]["combined"]["mean"],
                     "ROAD 95% CI": fmt_interval(s["road"]["combined"], 3, signed=True),
                     "lung energy (median)": s["lung_energy"]["median"],
                     "s per map (median)": s["seconds_per_map"]["median"],
                     "images": s["n_images"]})
    return pd.DataFrame(rows)


def cascade_table(report: dict[str, Any], measure: str = "spearman") -> pd.DataFrame:
    """Mean ``measure`` per method (rows) and cascade stage (columns); empty where a stage was not run."""
    stages = [c["stage"] for c in report["cascade"]]
    rows = []
    for name in _names(report):
        s = _section(report, name)
        rows.append({"method": name, **{st: (stage_value(s, st, measure) or {}).get("mean") for st in stages}})
    return pd.DataFrame(rows)


def road_table(report: dict[str, Any]) -> pd.DataFrame:
    """Mean change in the explained class's probability per removal level, MoRF and LeRF, per method."""
    rows = []
    for name in _names(report):
        road = _section(report, name)["road"]
        row: dict[str, Any] = {"method": name}
        row.update({f"MoRF −{p}%": v for p, v in zip(road["removed_percent"], road["morf"])})
        row.update({f"LeRF −{p}%": v for p, v in zip(road["removed_percent"], road["lerf"])})
        rows.append(row)
    return pd.DataFrame(rows)


def lung_table(report: dict[str, Any]) -> pd.DataFrame:
    """Median share of map energy inside the lungs, overall and by true class, with the even-spread reference."""
    rows = []
    for name, energy in [(n, _section(report, n)["lung_energy"]) for n in _names(report)] + [
            ("even spread (lungs' share of the image)", report.get("lung_area_share"))]:
        if not energy:
            continue
        rows.append({"method": name, "all": energy["median"],
                     **{CLASS_TITLES[c]: energy["by_class"].get(c) for c in CLASSES},
                     "images with lungs found": energy["n_with_lungs"]})
    return pd.DataFrame(rows)


def cascade_figure(report: dict[str, Any]) -> go.Figure:
    """Mean rank correlation per stage, one line per method: the cascade of Adebayo et al.'s figures."""
    table = cascade_table(report)
    stages = list(table.columns[1:])
    figure = go.Figure()
    for row in table.itertuples(index=False):
        values = list(row[1:])
        figure.add_trace(go.Scatter(x=stages, y=values, mode="lines+markers", name=row[0],
                                    line={"dash": "dot"} if row[0] in report.get("controls", {}) else {}))
    threshold = report.get("verdict_threshold")
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", line_color="gray",
                         annotation_text=f"pass: below {threshold} from {verdict_stage(report)} down")
    figure.update_layout(title="Rank correlation with the trained model's maps as the network is randomised",
                         xaxis_title="randomised from the head down to", yaxis_title="mean Spearman correlation",
                         yaxis_range=[-0.3, 1.05], height=420, margin={"t": 60, "b": 40})
    return figure


LOCALISATION_HOW = (
    "**Against the radiologists.** The RSNA Pneumonia Detection Challenge radiologists boxed the lung opacities on "
    "some NIH films. Each method's map of the pneumonia class (the class the boxes are about) is scored on them: "
    "is the map's peak inside a box (pointing game), and what share of its energy lies inside the boxes. The even "
    "lung map spreads the same energy evenly over the segmented lungs: a map that knows nothing about the opacity "
    "but stays on the lungs scores that. Films the model trained on are shown apart from films it never saw.")


def localisation_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per method and group of films: the pointing rate, the median box energy, the median even-lung
    share and the median paired difference, each with its 95% interval, as stored in ``localisation.json``."""
    from covidviz.evaluation.explanation_check.localisation_report import GROUP_WORDS
    rows = []
    for method, groups in report["methods"].items():
        for group, words in GROUP_WORDS.items():
            g = groups[group]
            row: dict[str, Any] = {"method": method, "films": words, "n": g["n_films"]}
            for key, label in (("pointing", "peak inside a box"), ("box_energy_median", "energy inside boxes"),
                               ("even_lung_median", "even lung map"), ("difference_median", "difference")):
                row[label] = g[key]["value"]
                row[f"{label} 95% CI"] = fmt_interval({"ci95": g[key]["ci95"]}, signed=key == "difference_median")
            rows.append(row)
    return pd.DataFrame(rows)


def localisation_words(report: dict[str, Any], method: str = "Grad-CAM") -> str:
    """The page's default map on films the model never saw, against the even lung map, in one paragraph."""
    from covidviz.evaluation.explanation_check.localisation_report import fmt_value, slow_note
    groups = report["methods"].get(method)
    if groups is None:
        return f"{method} was not scored against the radiologists' boxes."
    seen, unseen = groups["trained"], groups["unseen"]
    boxes = report["boxes"]
    text = (f"**{method}, pneumonia map, on {unseen['n_films']} boxed films the model never saw:** the peak lies "
            f"inside a radiologist's box on {fmt_value(unseen['pointing'])} of films; a median "
            f"{fmt_value(unseen['box_energy_median'])} of the map's energy lies inside the boxes, where the even "
            f"lung map puts {fmt_value(unseen['even_lung_median'])}. On the {seen['n_films']} films it trained on: "
            f"{fmt_value(seen['pointing'])} and {fmt_value(seen['box_energy_median'])} against "
            f"{fmt_value(seen['even_lung_median'])}. ({boxes['n_boxes']} boxes on {boxes['n_films']} films; "
            "95% bootstrap intervals over films.)")
    return text + (f" {slow_note(report)}" if slow_note(report) else "")
