"""``python -m covidviz fit-lung-floor``: fit the lung segmenter's confidence floor and the flat-lung limit on
validation films, record them in the segmenter's sidecar, and measure them on real films and offline non-chest
images (the real segmenter and model).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz.evaluation.artifacts.abstention_artifact import SETS
from covidviz.evaluation.artifacts.lung_floor import FLAT_RULE, FLOOR_FILE, RULE
from covidviz.evaluation.artifacts.saved import eval_dir

if TYPE_CHECKING:
    from covidviz.lungs.field import LungCheck


def _real_measures(data_dir: str | Path, weights_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Each evaluation film's lung confidence and the flat share of its lung field (NaN: no pair of lungs), through
    the one preprocessing path, one segmenter pass per film."""
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.io.loading import load_xray_file
    from covidviz.lungs.segmenter import load_segmenter
    from covidviz.model.preprocessing import prepare
    segmenter = load_segmenter(weights_dir)
    splits = records_for_splits(data_dir, weights_dir)
    out = {}
    for split in SETS:
        records = splits[split]
        checks = [one.check for start in range(0, len(records), 32)
                  for one in prepare([load_xray_file(Path(data_dir) / r.file).pixels
                                      for r in records[start:start + 32]], segmenter)]
        paired = [c is not None and c.paired for c in checks]
        out[split] = {"confidence": np.array([c.confidence if ok else np.nan for c, ok in zip(checks, paired)]),
                      "flat": np.array([c.flat if ok else np.nan for c, ok in zip(checks, paired)])}
    return out


def _real_summary(measures: dict[str, np.ndarray], floor: float, max_flat: float) -> dict[str, Any]:
    paired, flat = (v[np.isfinite(v)] for v in (measures["confidence"], measures["flat"]))
    return {"n": int(measures["confidence"].size), "with_a_pair": int(paired.size),
            "below_floor": int((paired < floor).sum()),
            "lowest": [round(float(v), 4) for v in np.sort(paired)[:3]],
            "median": round(float(np.median(paired)), 4),
            "above_flat_limit": int((flat > max_flat).sum()),
            "flattest": [round(float(v), 4) for v in np.sort(flat)[::-1][:3]],
            "median_flat": round(float(np.median(flat)), 4)}


def _non_chest(weights_dir: Path) -> dict[str, Any]:
    """Per offline set: how many images get a class without the floor and with it (the real model, each image
    through the upload path), how many each check stops, and the images the floor alone withholds a class from."""
    from covidviz.data.ood_sets import documents_and_screens, grayscale_pictures, non_chest_dicoms, skimage_pictures
    from covidviz.model.predictor import Predictor
    predictor = Predictor(weights_dir, engine="torch")
    distance_limit = np.inf if predictor.guard is None else predictor.guard.threshold  # no guard yet: none is far
    segmenter = predictor.segmenter
    floor = None if segmenter is None else segmenter.min_confidence
    limit = np.inf if segmenter is None or segmenter.max_flat is None else segmenter.max_flat
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
        flat = np.array([one.check is not None and one.check.paired and one.check.flat > limit for one in prepared])
        geometry_only = np.array([
            predictor.verdict(np.array(list(p.probabilities.values())), p.ood_distance,
                              None if one.check is None else _paired_only(one.check), pictures[n].colourful)[1] is None
            for n, p, one in zip(names, predictions, prepared)])
        out[label] = {"n": len(names), "held_out": held_out,
                      "given_a_class_without_floor": int(geometry_only.sum()),
                      "given_a_class": int(with_floor.sum()),
                      "beyond_ood_threshold": int(far.sum()), "no_plausible_lungs": int(no_lungs.sum()),
                      "both": int((far & no_lungs).sum()), "flat_lungs": int(flat.sum()),
                      "stopped_only_for_flat_lungs": [n for n, one in zip(names, prepared)
                                                      if _flat_alone(one.check, floor, limit)],
                      "caught_by_floor": [n for n, before, after in zip(names, geometry_only, with_floor)
                                          if before and not after],
                      "still_given_a_class": [n for n, after in zip(names, with_floor) if after]}
    return out


def _flat_alone(check: LungCheck | None, floor: float | None, limit: float) -> bool:
    """A pair of lungs that geometry and the confidence floor accept, refused only because it is flat."""
    return (check is not None and check.paired and (floor is None or check.confidence >= floor)
            and check.flat > limit)


def _paired_only(check: LungCheck) -> LungCheck:
    """The check as geometry alone would have given it (the confidence floor and the flat-lung limit left out)."""
    return replace(check, plausible=check.paired, reason="" if check.paired else check.reason)


def fit_lung_floor(data_dir: str | Path, weights_dir: str | Path) -> dict[str, Any]:
    """Fit the floor and the flat-lung limit on validation, record them in the segmenter's sidecar, measure them,
    write the report."""
    from covidviz.lungs.field import confidence_floor, flat_limit
    from covidviz.lungs.segmenter import LUNGS_SUBDIR, PLAUSIBILITY_KEY
    from covidviz.model.sidecar import update_sidecar
    from covidviz.verified import read_sidecar
    weights_dir = Path(weights_dir)
    measures = _real_measures(data_dir, weights_dir)
    floor = confidence_floor(measures["val"]["confidence"])
    max_flat = flat_limit(measures["val"]["flat"])
    lungs_dir = weights_dir / LUNGS_SUBDIR
    update_sidecar(lungs_dir, **{PLAUSIBILITY_KEY: {
        "min_confidence": floor, "rule": RULE, "max_flat": max_flat, "flat_rule": FLAT_RULE,
        "fitted_on": f"validation split of the classifier {read_sidecar(weights_dir)['weights_sha256'][:12]}"}})
    report = {"segmenter_sha256": read_sidecar(lungs_dir)["weights_sha256"],
              "weights_sha256": read_sidecar(weights_dir)["weights_sha256"],
              "min_confidence": floor, "rule": RULE, "max_flat": max_flat, "flat_rule": FLAT_RULE,
              "real": {split: _real_summary(values, floor, max_flat) for split, values in measures.items()},
              "non_chest": _non_chest(weights_dir)}
    eval_dir(weights_dir).mkdir(exist_ok=True)
    (eval_dir(weights_dir) / FLOOR_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


