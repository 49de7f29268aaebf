"""How far each heatmap method can be trusted on this model: the artifact side of ``explain-check``.

``python -m covidviz explain-check`` (see :mod:`covidviz.evaluation.explanation_check.explanation_run`) measures every CAM
method on a seeded sample of the internal test split and writes ``weights/eval/explanations.json``; the
Explanation quality page, the model card and the Diagnose method picker read that file through this
module, which needs neither torch nor the model. Three checks:

- **randomisation** (Adebayo et al. 2018): rank correlation and SSIM between the trained model's map and
  the map after re-initialising the network from the head down (:mod:`~covidviz.evaluation.explanation_check.randomisation`);
- **faithfulness**: ROAD scores (Rong et al. 2022, :mod:`~covidviz.evaluation.explanation_check.faithfulness`);
- **lung focus**: the share of map energy inside the lung mask, by true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidviz import CLASSES

FILE_NAME = "explanations.json"
HOW_TO_MAKE = "run `python -m covidviz explain-check --data ../shared/cxr` to write it"
PASS_BELOW = 0.5  # the verdict's threshold on the rank correlation
VERDICT_STAGE_INDEX = 1  # the first stage that reaches into the feature extractor (head + last dense block)
N_BOOT = 2000


class ExplanationsError(FileNotFoundError):
    """explanations.json is missing or unreadable; the message says what to do."""


def explanations_path(weights_dir: str | Path) -> Path:
    return Path(weights_dir) / "eval" / FILE_NAME


def load_explanations(weights_dir: str | Path) -> dict[str, Any]:
    """``weights/eval/explanations.json``, checked to hold per-method results."""
    from covidviz.evaluation.artifacts.saved import read_artifact_json
    path = explanations_path(weights_dir)
    return read_artifact_json(path, "methods", "per-method", ExplanationsError,
                              f"The explanation check has not been run for this model (no {path}): {HOW_TO_MAKE}.",
                              HOW_TO_MAKE)


def verdict_rule(stage: str, threshold: float = PASS_BELOW) -> str:
    """The pass/fail rule in words, stored with the verdicts so every reader sees the rule that made them."""
    return (f"A method passes when, once the network is randomised from the head down to {stage} or further, the "
            f"mean Spearman rank correlation between the trained and the randomised model's maps (same image, same "
            f"class) is below {threshold} at every stage checked; it fails when it is {threshold} or more at any of "
            "them: its maps keep their layout without the learned weights, so they show the image more than the "
            "model. The deciding stage is the one with the highest mean; the verdict is uncertain when that "
            f"stage's 95% CI includes {threshold}.")


# --- sampling -------------------------------------------------------------------------------------------------------


def stratified_sample(labels: Sequence[int], per_class: int, seed: int) -> list[int]:
    """Row indices: ``per_class`` rows of each class drawn at random without replacement (all of a class that
    has fewer), seeded. Ordered class by class in draw order, so the first k of each class form a nested
    smaller sample (the slow methods run on that)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for k in range(len(CLASSES)):
        rows = np.flatnonzero(labels == k)
        out += [int(i) for i in rng.permutation(rows)[:per_class]]
    return out


def nested_subset(labels: Sequence[int], per_class: int) -> list[int]:
    """Positions of the first ``per_class`` items of each class in a :func:`stratified_sample` order."""
    seen: dict[int, int] = {}
    keep = []
    for position, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= per_class:
            keep.append(position)
    return keep


# --- summaries ------------------------------------------------------------------------------------------------------


def mean_ci(values: Sequence[float | None], seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Mean over images with a 95% percentile-bootstrap interval; undefined values (None, NaN) left out."""
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    means = x[np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    return {"mean": float(x.mean()), "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
            "n": int(x.size)}


def _verdict(stages: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Pass or fail on the highest mean correlation from the verdict stage down, and whether its CI agrees."""
    checked = [s for s in stages[VERDICT_STAGE_INDEX:] if s["spearman"]["mean"] is not None]
    if not checked:
        return {"verdict": "not run", "deciding_stage": None, "verdict_certain": False}
    worst = max(checked, key=lambda s: s["spearman"]["mean"])
    passed = worst["spearman"]["mean"] < threshold
    lo, hi = worst["spearman"]["ci95"]
    return {"verdict": "pass" if passed else "fail", "deciding_stage": worst["stage"],
            "verdict_certain": bool(hi < threshold) if passed else bool(lo >= threshold)}


def summarise_method(records: list[dict[str, Any]], stage_names: Sequence[str], threshold: float = PASS_BELOW,
                     seed: int = 0) -> dict[str, Any]:
    """One method's section of explanations.json from its per-image records (see ``explanation_run``)."""
    from covidviz.evaluation.measures.lung_reading import lung_energy_summary

    stages = []
    for index, name in enumerate(stage_names):
        rows = [r["randomisation"][index] for r in records if len(r["randomisation"]) > index]
        if rows:
            stages.append({"stage": name, "spearman": mean_ci([x["spearman"] for x in rows], seed),
                           "ssim": mean_ci([x["ssim"] for x in rows], seed)})
    removed = records[0]["road"]["removed_percent"]
    y = np.array([r["true_class"] for r in records])
    shares = np.array([np.nan if r["lung_share"] is None else r["lung_share"] for r in records], dtype=float)
    seconds = np.array([r["seconds_per_map"] for r in records], dtype=float)
    return {
        "n_images": len(records),
        "by_class": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
        "randomisation": stages,
        **_verdict(stages, threshold),
        "road": {"removed_percent": removed,
                 "morf": [float(np.mean([r["road"]["morf"][i] for r in records])) for i in range(len(removed))],
                 "lerf": [float(np.mean([r["road"]["lerf"][i] for r in records])) for i in range(len(removed))],
                 "combined": mean_ci([r["road"]["combined"] for r in records], seed)},
        "lung_energy": lung_energy_summary({"x": (y, shares)})["x"],
        "seconds_per_map": {"median": float(np.median(seconds)), "mean": float(seconds.mean())},
    }


# --- reading the results --------------------------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    """Method -> "pass", "fail" or "not run"."""
    return {name: section["verdict"] for name, section in report["methods"].items()}


def faithfulness_ranking(report: dict[str, Any]) -> list[str]:
    """Methods from the most faithful (highest mean combined ROAD score) down; those without one last."""
    def key(name: str) -> float:
        mean = report["methods"][name]["road"]["combined"]["mean"]
        return -np.inf if mean is None else mean
    return sorted(report["methods"], key=key, reverse=True)


def verdict_word(section: dict[str, Any]) -> str:
    """pass, fail, pass (uncertain), fail (uncertain) or not run."""
    certain = section["verdict_certain"] or section["verdict"] == "not run"
    return section["verdict"] + ("" if certain else " (uncertain)")


def road_label(report: dict[str, Any], method: str, digits: int = 3) -> str:
    """"Grad-CAM (+0.064)", saying so when a method was scored on fewer images than the others (a different,
    smaller sample: its score is not directly comparable)."""
    section = report["methods"][method]
    most = max(s["n_images"] for s in report["methods"].values())
    fewer = f", on {section['n_images']} images only" if section["n_images"] < most else ""
    return f"{method} ({section['road']['combined']['mean']:+.{digits}f}{fewer})"


def verdict_stage(report: dict[str, Any]) -> str:
    return report["cascade"][VERDICT_STAGE_INDEX]["stage"]


def stage_value(section: dict[str, Any], stage: str, measure: str = "spearman") -> dict[str, Any] | None:
    """A method's mean and interval at one cascade stage (None where the stage was not run for it)."""
    return next((s[measure] for s in section["randomisation"] if s["stage"] == stage), None)


def method_help(report: dict[str, Any], method: str) -> str:
    """One line for the Diagnose method picker: the method's verdict, correlation and ROAD score."""
    section = report["methods"].get(method)
    if section is None:
        return f"{method}: not checked."
    if section["verdict"] == "not run":
        return f"{method}: the randomisation check was not run."
    rho = stage_value(section, section["deciding_stage"])
    word = "passes" if section["verdict"] == "pass" else "FAILS"
    text = (f"{method} {word} the randomisation check{'' if section['verdict_certain'] else ' (uncertain)'}: "
            f"highest rank correlation {rho['mean']:.2f} with the trained model's maps once the network is "
            f"randomised from the head down to {verdict_stage(report)} or further")
    combined = section["road"]["combined"]["mean"]
    if combined is not None:
        text += f"; ROAD faithfulness {combined:+.3f}"
    return text + f" ({section['n_images']} test images)."


def fmt_interval(value: dict[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    """A 95% interval as "0.05 to 0.20", or n/a."""
    lo, hi = (value or {}).get("ci95", [None, None])
    if lo is None or hi is None:
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{lo:{spec}} to {hi:{spec}}"


def fmt_mean_ci(value: dict[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    """0.12 (0.05 to 0.20), or n/a."""
    if not value or value.get("mean") is None:
        return "n/a"
    interval = fmt_interval(value, digits, signed)
    return f"{value['mean']:{'+' if signed else ''}.{digits}f}" + (f" ({interval})" if interval != "n/a" else "")


def sample_text(report: dict[str, Any]) -> str:
    """How many images, how they were drawn, which methods saw fewer, and where the seconds were measured."""
    from covidviz import CLASS_TITLES
    sample, machine = report["sample"], report.get("machine", {})
    counts = ", ".join(f"{CLASS_TITLES[c]} {n}" for c, n in sample["by_class"].items())
    text = (f"Checked on **{sample['n_images']} images** ({counts}) from the {sample['source']}. Each method "
            f"explains the class the model predicts for the image, as the Diagnose page shows it by default.")
    for method, slow in sample.get("slow_methods", {}).items():
        stages = report.get("plan", {}).get(method, {}).get("cascade_stages", [])
        text += (f" {method} runs a forward pass per feature channel, so it was checked on {slow['n_images']} of "
                 f"them ({slow['images_per_class']} per class) and through the first {len(stages)} cascade "
                 "stages only.")
    if machine:
        text += (f" Seconds per map were measured on {machine.get('cpu', '?')} with {machine.get('torch_threads', '?')}"
                 f" torch thread(s) ({machine.get('cpu_cores', '?')} cores on the machine).")
    return text


def check_warnings(report: dict[str, Any], weights_sha256: str | None, remedy: str) -> list[str]:
    """What to say over a heatmap check's results (this file's or ``localisation.json``): that they were made for
    other weights than ``weights_sha256`` (None: unknown), or before a method's maps changed."""
    from covidviz.evaluation.artifacts.saved import stale_warning
    from covidviz.explain.cam.methods import revision_warning
    return [w for w in (stale_warning(report.get("weights_sha256"), weights_sha256, remedy),
                        revision_warning(report, remedy)) if w]


def explanation_lines(report: dict[str, Any] | None, weights_sha256: str | None = None) -> list[str]:
    """The model card's section: per method, the randomisation verdict, ROAD and lung focus, with the sample."""
    title = "## Can the heatmaps be trusted? Sanity, faithfulness and lung focus of every method"
    if not report:
        return [title, "The explanation check has not been run for this model: `python -m covidviz explain-check` "
                "writes `eval/explanations.json`, and `python -m covidviz facts` puts its results here.", ""]
    stage = verdict_stage(report)
    lines = [title, sample_text(report).replace("**", ""), ""]
    for warning in check_warnings(report, weights_sha256, HOW_TO_MAKE):
        lines += [f"**{warning}**", ""]
    lines += [f"| method | randomisation (from {stage} down) | highest rank correlation (95% CI), at | "
              "ROAD combined (95% CI) | median lung energy | s per map | images |", "|---|---|---|---|---|---|---|"]
    for name, section in {**report["methods"], **report.get("controls", {})}.items():
        energy = section["lung_energy"]["median"]
        deciding = section["deciding_stage"]
        lines.append(f"| {name} | {verdict_word(section)} | "
                     f"{fmt_mean_ci(stage_value(section, deciding)) if deciding else 'n/a'}, {deciding or ''} | "
                     f"{fmt_mean_ci(section['road']['combined'], 3, signed=True)} | "
                     f"{'n/a' if energy is None else f'{energy:.2f}'} | {section['seconds_per_map']['median']:.2f} | "
                     f"{section['n_images']} |")
    area = report.get("lung_area_share", {}).get("median")
    ranked = [m for m in faithfulness_ranking(report) if report["methods"][m]["road"]["combined"]["mean"] is not None]
    lines += ["", f"- Rule: {report['verdict_rule']}",
              f"- Pass: {', '.join(m for m, v in verdicts(report).items() if v == 'pass') or 'none'}; fail: "
              f"{', '.join(m for m, v in verdicts(report).items() if v == 'fail') or 'none'}.",
              f"- Most faithful by ROAD ({report['road']['target']}; "
              f"{', '.join(map(str, report['road']['removed_percent']))}% of pixels removed): "
              f"{', '.join(road_label(report, m) for m in ranked[:3]) or 'n/a'}.",
              "- Lung energy: median share of the explained class's map inside the lung outline"
              + (f"; a map spread evenly would put {area:.2f} there." if area is not None else "."), ""]
    return lines
