"""``python -m covidviz explain-check --part localisation``: every CAM method's pneumonia map on the films the
RSNA radiologists boxed, scored against their boxes; writes ``weights/eval/localisation.json``.

Each film goes through the model's own preprocessing (lung segmenter, lung-field crop) and each map is the
Diagnose page's map (:func:`~covidviz.evaluation.explanation_check.explanation_run.page_map`) for the pneumonia
class, the class the boxes are about. The boxes are carried into the crop's frame with the crop the
preprocessing recorded. Records are appended to a progress file as they are made and kept (a record depends
only on the model, the class, the film and the method), so an interrupted run resumes where it stopped and a
later run with more methods or films reuses them. The slow methods (Score-CAM: a forward pass per feature channel) run on a seeded
subset of films, half trained on and half never seen.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from covidviz import CLASSES
from covidviz.evaluation.explanation_check.explanation_run import append_progress, page_map, read_progress, say
from covidviz.evaluation.explanation_check.localisation import (
    BOXES_FILE,
    GROUPS,
    Box,
    box_mask,
    even_lung_share,
    film_measures,
    read_boxes,
    summarise_localisation,
)
from covidviz.evaluation.explanation_check.localisation_report import localisation_path
from covidviz.evaluation.explanation_check.sample import machine
from covidviz.explain.cam.methods import MAPS_REVISION, METHODS, SLOW_METHODS
from covidviz.model.preprocessing import CANONICAL_SIZE, Prepared, model_batch

EXPLAINED = CLASSES.index("pneumonia")


def read_splits(split_file: str | Path) -> dict[str, str]:
    """A split file (``weights/split.csv``): file -> train, val or test, the split the model was trained with,
    which tells the films it trained on from those it never saw."""
    with Path(split_file).open(newline="") as handle:
        return {row["file"]: row["split"] for row in csv.DictReader(handle)}


def film_order(files: Sequence[str], splits: dict[str, str], seed: int) -> list[str]:
    """The order films are scored in: those the model never saw first, then those it trained on, each in a
    seeded random order, so a run cut short (``limit``) holds every unseen film and a random sample of the rest."""
    rng = np.random.default_rng(seed)
    order = []
    for group in ("unseen", "trained"):
        members = [f for f in files if splits.get(f) in GROUPS[group]]
        order += [members[i] for i in rng.permutation(len(members))]
    return order + [f for f in files if f not in set(order)]


def slow_subset(files: Sequence[str], splits: dict[str, str], n: int, seed: int) -> list[str]:
    """``n`` films for the slow methods, seeded: half (rounded up) trained on, the rest never seen."""
    rng = np.random.default_rng(seed)
    trained = [f for f in files if splits.get(f) in GROUPS["trained"]]
    unseen = [f for f in files if splits.get(f) in GROUPS["unseen"]]
    n_trained = min(len(trained), (n + 1) // 2)
    return ([trained[i] for i in rng.permutation(len(trained))[:n_trained]]
            + [unseen[i] for i in rng.permutation(len(unseen))[:n - n_trained]])


def film_maps(model: torch.nn.Module, prepared: Prepared, boxes: Sequence[Box], methods: Sequence[str],
              input_size: int, class_index: int = EXPLAINED) -> dict[str, dict[str, Any]]:
    """Each method's pointing game and box energy on one prepared film (the boxes in the original's coordinates),
    with the seconds each map took."""
    batch = torch.from_numpy(model_batch([prepared.image], input_size))
    inside = box_mask(boxes, prepared.box, CANONICAL_SIZE)
    out = {}
    for method in methods:
        start = time.perf_counter()
        cam = page_map(method)(model, batch, class_index)
        out[method] = {**film_measures(cam, inside), "seconds": time.perf_counter() - start}
    return out


def film_row(file: str, split: str, prepared: Prepared, boxes: Sequence[Box]) -> dict[str, Any]:
    """What a film contributes besides its maps: split, boxes, whether the model read the lung field, and the
    even-lung baseline (None without a plausible pair of lungs, as for lung energy)."""
    inside = box_mask(boxes, prepared.box, CANONICAL_SIZE)
    even = even_lung_share(prepared.lungs, inside) if prepared.lungs_found else float("nan")
    return {"file": file, "split": split, "n_boxes": len(boxes), "lung_field": prepared.lung_field,
            "box_share_of_crop": float(inside.mean()),
            "even_lung": float(even) if np.isfinite(even) else None}


def localisation_check(weights_dir: str | Path, data_dir: str | Path, out: str | Path | None = None,
                       methods: Sequence[str] | None = None, slow_films: int = 20, seed: int = 0,
                       limit: int | None = None, n_boot: int = 1000, log: TextIO | None = None,
                       split: str | Path | None = None) -> dict[str, Any]:
    """Score every method's pneumonia map against the radiologists' boxes and write ``localisation.json``
    (default ``weights_dir/eval/``). ``limit`` takes the first films only (to estimate the cost). ``split`` is
    the split file the model was trained with (default ``weights_dir/split.csv``; a comparison model keeps none
    of its own, as it shares the shipped model's)."""
    from covidviz.io.loading import load_xray_file
    from covidviz.model.predictor import Predictor

    weights_dir, data_dir = Path(weights_dir), Path(data_dir)
    out = Path(out) if out else localisation_path(weights_dir)
    methods = list(methods or METHODS)
    boxes = read_boxes(data_dir / BOXES_FILE)
    splits = read_splits(split or weights_dir / "split.csv")
    files = film_order(sorted(boxes), splits, seed)[:limit]
    slow = set(slow_subset(files, splits, slow_films, seed))
    predictor = Predictor(weights_dir)
    model = predictor.model.float().eval()
    sha = predictor.sidecar["weights_sha256"]
    # a record depends on the model, the class, the film and the method (and how methods draw) only: runs over
    # other films or methods (a first run of the fast methods, then Score-CAM on its subset) share the records
    key = hashlib.sha256(json.dumps([sha, EXPLAINED, MAPS_REVISION]).encode()).hexdigest()[:16]
    progress = out.with_name(out.stem + ".progress.jsonl")
    done = read_progress(progress, key)
    say(log, f"localisation: {len(files)} boxed films, methods {', '.join(methods)} ({len(slow)} films for "
              f"{', '.join(m for m in methods if m in SLOW_METHODS) or 'no slow method'}); progress in {progress}")
    start = time.perf_counter()
    films = []
    for position, file in enumerate(files):
        prepared = predictor.prepare([load_xray_file(data_dir / file).pixels])[0]
        row = film_row(file, splits.get(file, "not in split"), prepared, boxes[file])
        todo = [m for m in methods if (m not in SLOW_METHODS or file in slow) and (file, m) not in done]
        for method, record in film_maps(model, prepared, boxes[file], todo, predictor.input_size).items():
            done[(file, method)] = {"image": file, **record}
            append_progress(progress, key, method, done[(file, method)])
        row["maps"] = {m: {k: v for k, v in done[(file, m)].items() if k != "image"}
                       for m in methods if (file, m) in done}
        films.append(row)
        say(log, f"[{position + 1}/{len(files)}] {row['split']}: " + ", ".join(
            f"{m} {'hit' if r['peak_in_box'] else 'miss'} {r['box_energy'] or 0:.2f}" for m, r in row["maps"].items()))
    report = {
        "weights_sha256": sha, "model": predictor.sidecar.get("name", ""), "input_size": predictor.input_size,
        "explained_class": CLASSES[EXPLAINED], "maps_revision": MAPS_REVISION,
        "boxes": {"file": BOXES_FILE, "n_films": len(files), "n_boxes": sum(len(boxes[f]) for f in files),
                  "source": "RSNA Pneumonia Detection Challenge radiologists' lung-opacity boxes on NIH pool films"},
        "frame": ("boxes carried into the lung-field crop the model reads (the crop preprocessing records), measured "
                  f"on its {CANONICAL_SIZE} x {CANONICAL_SIZE} grid; maps as the Diagnose page draws them"),
        "groups": {g: list(s) for g, s in GROUPS.items()},
        "slow_methods": {m: {"n_films": len(slow), "seed": seed} for m in methods if m in SLOW_METHODS},
        "n_boot": n_boot, "machine": machine(),
        "elapsed_seconds_this_invocation": round(time.perf_counter() - start, 1),
        "methods": summarise_localisation(films, methods, n_boot, seed),
        "films": films,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    say(log, f"wrote {out}")
    return report
