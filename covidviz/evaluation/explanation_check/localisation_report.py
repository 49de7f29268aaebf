"""The artifact side of the localisation check: reading ``weights/eval/localisation.json`` and the model card's
section, without torch or the model (the page, the card and the facts read it through here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILE_NAME = "localisation.json"
HOW_TO_MAKE = "run `python -m covidviz explain-check --part localisation --data ../shared/cxr` to write it"
GROUP_WORDS = {"trained": "trained on", "unseen": "never seen", "all": "all"}


class LocalisationError(FileNotFoundError):
    """localisation.json is missing or unreadable; the message says what to do."""


def localisation_path(weights_dir: str | Path) -> Path:
    return Path(weights_dir) / "eval" / FILE_NAME


def load_localisation(weights_dir: str | Path) -> dict[str, Any]:
    """``weights/eval/localisation.json``, checked to hold per-method results."""
    from covidviz.evaluation.artifacts.saved import read_artifact_json
    path = localisation_path(weights_dir)
    return read_artifact_json(path, "methods", "per-method", LocalisationError,
                              f"The localisation check has not been run for this model (no {path}): {HOW_TO_MAKE}.",
                              HOW_TO_MAKE)


def fmt_value(value: dict[str, Any], percent: bool = True, signed: bool = False) -> str:
    """A bootstrap value as "31% (22–40%)" (or "+0.05 (…)" when not a percentage); n/a when undefined."""
    v, (lo, hi) = value.get("value"), value.get("ci95", [None, None])
    if v is None:
        return "n/a"
    if percent:
        main = f"{100 * v:+.0f} pp" if signed else f"{v:.0%}"
        ci = (f"{100 * lo:+.0f} to {100 * hi:+.0f}" if signed else f"{100 * lo:.0f}–{100 * hi:.0f}%") \
            if lo is not None else ""
    else:
        main, ci = f"{v:.2f}", f"{lo:.2f}–{hi:.2f}" if lo is not None else ""
    return f"{main} ({ci})" if ci else main


def slow_note(report: dict[str, Any]) -> str:
    """Which methods ran on fewer films, in one sentence (empty when none)."""
    slow = report.get("slow_methods", {})
    return " ".join(f"{m} runs a forward pass per feature channel, so it was scored on a seeded subset of "
                    f"{s['n_films']} films (half trained on, half never seen)." for m, s in slow.items())


def localisation_lines(report: dict[str, Any] | None, weights_sha256: str | None = None) -> list[str]:
    """The model card's section: per method and group of films, the pointing game, the median share of the map's
    energy inside the radiologists' boxes, the even-lung baseline and the paired difference, with 95% intervals."""
    title = "## Do the heatmaps point at the radiologists' opacities?"
    if not report:
        return [title, "The localisation check has not been run for this model: `python -m covidviz explain-check "
                "--part localisation` writes `eval/localisation.json`, and `python -m covidviz facts` puts its "
                "results here.", ""]
    from covidviz.evaluation.explanation_check.explanations import check_warnings
    boxes = report["boxes"]
    lines = [title,
             f"{boxes['n_boxes']} lung-opacity boxes drawn by the RSNA Pneumonia Detection Challenge radiologists on "
             f"{boxes['n_films']} NIH pool films, against each method's map of the **{report['explained_class']}** "
             "class as the Diagnose page draws it. The boxes are carried into the lung-field crop the model reads. "
             "Pointing game: the map's peak lies inside a box. Energy: the share of the map inside the boxes; the "
             "even lung map spreads the same energy evenly over the segmented lungs (it is also the chance that a "
             "peak dropped at random on the lungs lands in a box). Difference: median per-film box energy minus "
             "even-lung share, in percentage points. Medians and rates over films, 95% bootstrap intervals over films."
             + (f" {slow_note(report)}" if slow_note(report) else ""), ""]
    for warning in check_warnings(report, weights_sha256, HOW_TO_MAKE):
        lines += [f"**{warning}**", ""]
    lines += ["| method | films | peak inside a box | energy inside boxes (median) | even lung map (median) | "
              "difference (median) |", "|---|---|---|---|---|---|"]
    for method, groups in report["methods"].items():
        for group in ("trained", "unseen", "all"):
            g = groups[group]
            lines.append(f"| {method} | {GROUP_WORDS[group]}: {g['n_films']} | {fmt_value(g['pointing'])} | "
                         f"{fmt_value(g['box_energy_median'])} | {fmt_value(g['even_lung_median'])} | "
                         f"{fmt_value(g['difference_median'], signed=True)} |")
    lines += ["", "The boxes are not segmentations: each also covers normal lung, so no map can put all its energy "
              "inside them. A map that localises the opacity should beat the even lung map.", ""]
    return lines
