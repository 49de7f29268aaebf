"""``python -m covidviz fit-lung-floor``: fit the lung segmenter's confidence floor on validation films, record it
in the segmenter's sidecar, and measure it on real films and offline non-chest images (the real segmenter and model).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz.evaluation.artifacts.abstention_artifact import SETS
from covidviz.evaluation.artifacts.lung_floor import FLOOR_FILE, RULE
from covidviz.evaluation.artifacts.saved import eval_dir

if TYPE_CHECKING:
    from covidviz.lungs.field import LungCheck


def _real_confidences(data_dir: str | Path, weights_dir: Path) -> dict[str, np.ndarray]:
    """Each evaluation film's confidence (NaN: no pair of lungs), one segmenter pass per film."""
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.io.loading import load_xray_file
    from covidviz.lungs.field import lung_confidences
    from covidviz.lungs.segmenter import load_segmenter
    segmenter = load_segmenter(weights_dir)
    splits = records_for_splits(data_dir, weights_dir)
    out = {}
    for split in SETS:
        records = splits[split]
        parts = [lung_confidences(segmenter.probabilities([load_xray_file(Path(data_dir) / r.file).pixels
                                                           for r in records[start:start + 32]]))
                 for start in range(0, len(records), 32)]
        out[split] = np.concatenate(parts)
    return out


def _real_summary(values: np.ndarray, floor: float) -> dict[str, Any]:
    paired = values[np.isfinite(values)]
    return {"n": int(values.size), "with_a_pair": int(paired.size), "below_floor": int((paired < floor).sum()),
            "lowest": [round(float(v), 4) for v in np.sort(paired)[:3]],
            "median": round(float(np.median(paired)), 4)}


def _non_chest(weights_dir: Path) -> dict[str, Any]:
    """Per offline set: how many images get a class without the floor and with it (the real model, each image
    through the upload path), how many each check stops, and the images the floor alone withholds a class from."""
    from covidviz.data.ood_sets import documents_and_screens, grayscale_pictures, non_chest_dicoms, skimage_pictures
    from covidviz.model.predictor import Predictor
    predictor = Predictor(weights_dir, engine="torch")
    distance_limit = np.inf if predictor.guard is None else predictor.guard.threshold  # no guard yet: none is far
    out = {}
    for label, pictures, held_out in (("skimage pictures", skimage_pictures(), False),
                                      ("non-chest DICOMs", non_chest_dicoms(), False),
                                      ("grayscale pictures", grayscale_pictures(), True),
                                      ("documents and screens", documents_and_screens(), True)):
        names = sorted(pictures)
        predictions = predictor.predict_xrays([pictures[n] for n in names], names)
        prepared = predictor.prepare([pictures[n].pixels for n in names])
        with_floor = np.array([p.abstained is None for p in predictions])
        far = np.array([p.ood_distance is not None and p.ood_distance > distance_limit for p in predictions])
        no_lungs = np.array([p.lungs_plausible is False for p in predictions])
        geometry_only = np.array([
            predictor.verdict(np.array(list(p.probabilities.values())), p.ood_distance,
                              None if one.check is None else _paired_only(one.check), pictures[n].colourful)[1] is None
            for n, p, one in zip(names, predictions, prepared)])
        out[label] = {"n": len(names), "held_out": held_out,
                      "given_a_class_without_floor": int(geometry_only.sum()),
                      "given_a_class": int(with_floor.sum()),
                      "beyond_ood_threshold": int(far.sum()), "no_plausible_lungs": int(no_lungs.sum()),
                      "both": int((far & no_lungs).sum()),
                      "caught_by_floor": [n for n, before, after in zip(names, geometry_only, with_floor)
                                          if before and not after],
                      "still_given_a_class": [n for n, after in zip(names, with_floor) if after]}
    return out


def _paired_only(check: LungCheck) -> LungCheck:
    """The check as geometry alone would have given it (the floor left out)."""
    return replace(check, plausible=check.paired, reason="" if check.paired else check.reason)


def fit_lung_floor(data_dir: str | Path, weights_dir: str | Path) -> dict[str, Any]:
    """Fit the floor on validation, record it in the segmenter's sidecar, measure it, write the report."""
    from covidviz.lungs.field import confidence_floor
    from covidviz.lungs.segmenter import LUNGS_SUBDIR, PLAUSIBILITY_KEY
    from covidviz.model.sidecar import update_sidecar
    from covidviz.verified import read_sidecar
    weights_dir = Path(weights_dir)
    confidences = _real_confidences(data_dir, weights_dir)
    floor = confidence_floor(confidences["val"])
    lungs_dir = weights_dir / LUNGS_SUBDIR
    update_sidecar(lungs_dir, **{PLAUSIBILITY_KEY: {
        "min_confidence": floor, "rule": RULE,
        "fitted_on": f"validation split of the classifier {read_sidecar(weights_dir)['weights_sha256'][:12]}"}})
    report = {"segmenter_sha256": read_sidecar(lungs_dir)["weights_sha256"],
              "weights_sha256": read_sidecar(weights_dir)["weights_sha256"],
              "min_confidence": floor, "rule": RULE,
              "real": {split: _real_summary(values, floor) for split, values in confidences.items()},
              "non_chest": _non_chest(weights_dir)}
    eval_dir(weights_dir).mkdir(exist_ok=True)
    (eval_dir(weights_dir) / FLOOR_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


