"""How sure the lung segmenter must be of a pair of lungs for a class: the report of ``fit-lung-floor``.

Geometry alone (two lungs of plausible size, side by side) passes some grayscale photographs: the segmenter
draws two blobs in a cat's face, hesitantly. Real radiographs get a confident mask. The floor is the least mean
probability inside the lungs of any validation film with a pair of lungs, so no validation radiograph is refused;
it is written into the segmenter's sidecar (``weights/lungs/model.json``, under ``plausibility``), and the report
(``weights/eval/lung_floor.json``) says what it costs on internal test and the external sets and what it catches
among the offline non-chest images, the held-out grayscale pictures among them. What the model reads does not
change (a pair below the floor is still cropped); only whether it gives a class. The run that fits and measures
it is :mod:`covidviz.evaluation.artifacts.lung_floor_run`, kept apart so the model card's readers never import it.

Neither geometry nor confidence judges what lies inside the outline: the segmenter draws a confident, lung-shaped
pair in the black on either side of a white bell curve (a rendered histogram's negative). The flat-lung limit does:
the largest share of the lungs that may be flat (no texture at all) in the field the model reads, set by the
flattest validation film, recorded and reported beside the floor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidviz.evaluation.artifacts.saved import eval_dir
from covidviz.lungs.field import FLAT_WINDOW

FLOOR_FILE = "lung_floor.json"
RULE = "the least mean lung probability of any validation film with a pair of lungs"
FLAT_RULE = "the largest flat share of any validation film's lungs, rounded up to a thousandth"


def summary_lines(report: dict[str, Any] | None) -> list[str]:
    """The floor and the flat-lung limit, what they cost on real films and what they catch: for the CLI and the
    model card alike (nothing before fit-lung-floor has run)."""
    if not report:
        return []
    real = report["real"]
    names = {"val": "validation", "test": "internal test", "external": "external"}
    cost = ", ".join(f"{names[k]} {v['below_floor']} of {v['with_a_pair']}" for k, v in real.items())
    lines = [f"- **Lung confidence floor {report['min_confidence']:.3f}** ({report['rule']}; "
             f"{real['val']['with_a_pair']} films). A pair of lungs the segmenter marks with a lower mean probability "
             f"is not plausible, and the image gets no class. Real radiographs refused by it alone: {cost}; the "
             f"lowest internal test film reached {real['test']['lowest'][0]:.3f} and the lowest external one "
             f"{real['external']['lowest'][0]:.3f}."]
    if "max_flat" in report:
        flat_cost = ", ".join(f"{names[k]} {v['above_flat_limit']} of {v['with_a_pair']}" for k, v in real.items())
        lines.append(
            f"- **Flat-lung limit {report['max_flat']:.1%}** ({report['flat_rule']}). Inside the lungs of the field "
            f"the model reads, a pixel is flat when its {FLAT_WINDOW} x {FLAT_WINDOW} neighbourhood varies by less "
            "than one grey level of 256: a radiograph's lungs carry vessels, ribs and noise, a rendered page or chart "
            "is flat where it is blank, and the segmenter's outline and confidence cannot tell them apart. Where more "
            f"of the lungs is flat, the image gets no class. The measure (window, one grey level) was defined after a "
            "held-out document, the histogram's negative, showed the gap; only the limit is fitted, on validation. "
            f"Real radiographs refused by it: {flat_cost}; the "
            f"median film's lungs are {real['val']['median_flat']:.1%} flat (validation), the flattest internal "
            f"test film's {real['test']['flattest'][0]:.1%} and the flattest external one's "
            f"{real['external']['flattest'][0]:.1%}.")
    for label, v in report["non_chest"].items():
        held = " (held out: no threshold was placed with them)" if v["held_out"] else ""
        caught = f": {', '.join(v['caught_by_floor'])}" if v["caught_by_floor"] else ""
        still = f"; still given one: {', '.join(v['still_given_a_class'])}" if v["still_given_a_class"] else ""
        flat = ""
        if "flat_lungs" in v:
            alone = v["stopped_only_for_flat_lungs"]
            flat = (f", flat lungs {v['flat_lungs']}, of which geometry and the confidence floor passed "
                    f"{len(alone)}{': ' + ', '.join(alone) if alone else ''}")
        stops = (f" (beyond the OOD threshold {v['beyond_ood_threshold']}, no plausible lungs "
                 f"{v['no_plausible_lungs']}{flat}, both {v['both']})")
        lines.append(f"- {label[0].upper() + label[1:]}{held}: given a class with geometry alone "
                     f"{v['given_a_class_without_floor']} of {v['n']}, with the floor and the limit "
                     f"{v['given_a_class']}{stops}; the two alone withhold it from "
                     f"{len(v['caught_by_floor'])}{caught}{still}.")
    return lines


def load_lung_floor(weights_dir: str | Path) -> dict[str, Any] | None:
    path = eval_dir(weights_dir) / FLOOR_FILE
    return json.loads(path.read_text()) if path.is_file() else None
