"""The model card's section on acquisition shift, rendered from ``weights/eval/shift.json`` (measure-shift)."""

from __future__ import annotations

from typing import Any

from covidviz.evaluation.artifacts.saved import stale_warning
from covidviz.evaluation.explanation_check.explanations import fmt_mean_ci

TRANSFORM_TITLES = {
    "clean": "none (the films as they are)",
    "grain_noise": "film grain and detector noise",
    "contrast_curve": "non-linear contrast / gamma curve",
    "edge_enhance": "edge enhancement (unsharp masking)",
    "low_resolution_jpeg": "lower resolution and JPEG re-compression",
    "collimation_and_text": "collimation borders and burnt-in text",
    "digitised_film": "digitised film (curve, grain, blur, uneven light, film edge)",
}
STRONG_SHIFT = "digitised_film"
HOW_TO_MAKE = "run `python -m covidviz measure-shift --data ../shared/cxr` to write it"


def _films(sample: dict[str, Any]) -> dict[str, Any]:
    """What a sample read (films, seed, transforms), without how long it took."""
    return {k: v for k, v in sample.items() if k != "seconds"}


def _flips(s: dict[str, Any]) -> str:
    return f"{s['flipped']} of {s['films']}: {fmt_mean_ci(s['flip_rate'], 3)}"


def shift_lines(summary: dict[str, Any] | None, previous: dict[str, Any] | None = None,
                weights_sha256: str | None = None) -> list[str]:
    """Markdown: per transform, the share of films whose class changes (95% CI), and the shares flagged by the
    OOD guard, without plausible lungs and given no class; then what the guard makes of the strong shift.
    ``previous``: the previous model's ``shift.json`` (with its ``"folder"``); its flips stand beside as
    "before" when it read the same sample. Nothing before measure-shift has run."""
    if not summary:
        return []
    sample, transforms = summary["sample"], summary["transforms"]
    before = previous["transforms"] if previous and _films(previous["sample"]) == _films(sample) else None
    stale = stale_warning(summary.get("weights_sha256"), weights_sha256, HOW_TO_MAKE)
    lines = ["## Acquisition shift",
             *([f"> {stale}", ""] if stale else []),
             f"The same {sample.get('films', '?')} validation films ({sample.get('drawn', '')}), read clean and "
             "through each transform of `covidviz/data/acquisition.py` (`python -m covidviz measure-shift`). A flip is "
             "a class by the decision rule that differs from the clean film's; films given no class are counted "
             "apart (the flip compares the rule's class even for them)."
             + (f" Before: the previous model (`{previous['folder']}`, each under its own decision rule) on the same "
                "films and transforms; after: this model." if before else ""), "",
             "| transform | class flips vs clean"
             + (", before (95% CI) | class flips vs clean, after (95% CI)" if before else " (95% CI)")
             + " | OOD flagged | no plausible lungs | no class given |",
             "|---|---|---|---|---|" + ("---|" if before else "")]
    for name, s in transforms.items():
        flips = "—" if name == "clean" else _flips(s)
        if before:
            old = before.get(name)
            flips = ("—" if name == "clean" else _flips(old) if old else "n/a") + " | " + flips
        lines.append(f"| {TRANSFORM_TITLES.get(name, name)} | {flips} | {s['flagged_ood']:.1%} | "
                     f"{s['no_plausible_lungs']:.1%} | {s['abstained']:.1%} |")
    strong, clean = transforms.get(STRONG_SHIFT), transforms.get("clean")
    if strong and clean:
        most = "most of this shift passes the guard unflagged" if strong["flagged_ood"] < 0.5 else \
            "the guard flags most of this shift"
        lines += ["", f"On the digitised-film shift the OOD guard flags {strong['flagged_ood']:.1%} of the films "
                  f"(clean: {clean['flagged_ood']:.1%}), {strong['abstained']:.1%} get no class and "
                  f"{strong['flip_rate']['mean']:.1%} change class: {most}."]
    if not before:
        lines += ["", "The \"after\" column (the same films and transforms once the model is retrained with these "
                  "transforms as augmentations) waits for that retraining."]
    return lines + [""]
