"""``python -m covidviz evaluate``: predictions and metrics for validation, internal test and
external Hannover, written to ``weights/eval/`` so the dashboard never runs the model for them.

The temperature is fitted on validation only and stored in the sidecar; the Hannover set
chooses nothing (no checkpoint, threshold or temperature).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.calibration import fit_temperature, reliability_bins
from covidviz.data.collection import Record, load_canonical, read_metadata
from covidviz.evaluation.gallery import build_gallery
from covidviz.model.inference import pooled_and_logits, softmax
from covidviz.evaluation.metrics import brier_score, expected_calibration_error
from covidviz.evaluation.model_card import render_model_card
from covidviz.model.ood import VAL_QUANTILE, fit_guard, hard_threshold, save_guard
from covidviz.data.ood_sets import non_chest_dicoms, skimage_pictures
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import canonical_image
from covidviz.evaluation.report import metrics_report
from covidviz.model.sidecar import DEFAULT_WEIGHTS_DIR, read_sidecar, update_sidecar
from covidviz.data.split import read_split
from covidviz.model.weights import load_weights

EVAL_SPLITS = {"val": "validation", "test": "internal test", "external": "external (Hannover)"}


def records_for_splits(data_dir: str | Path, weights_dir: Path) -> dict[str, list[Record]]:
    """Validation and test records from the model's own split file; external from the metadata."""
    records = read_metadata(data_dir)
    by_file = {r.file: r for r in records}
    split = read_split(weights_dir / "split.csv")
    missing = [f for name in ("val", "test") for f in split[name] if f not in by_file]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the model's split are not in {data_dir}, e.g. {missing[0]}")
    return {"train": [by_file[f] for f in split["train"] if f in by_file],
            "val": [by_file[f] for f in split["val"]], "test": [by_file[f] for f in split["test"]],
            "external": [r for r in records if r.set == "external"]}


def write_predictions(path: Path, records: list[Record], probs: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "source", "true", *(f"p_{c}" for c in CLASSES)])
        for r, p in zip(records, probs):
            writer.writerow([r.file, r.source, r.label, *(f"{v:.6f}" for v in p)])


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def fit_and_measure_guard(model, size: int, pooled: dict[str, np.ndarray], weights_dir: Path) -> dict[str, Any]:
    """Fit the OOD guard (train features; thresholds from validation and offline non-chest images), save it,
    and measure it: detection on the non-chest images (also leave-one-out), false alarms on test and external."""
    others = {**skimage_pictures(), **non_chest_dicoms()}
    names = sorted(others)
    other_pooled, _ = pooled_and_logits(model, [canonical_image(others[n].pixels) for n in names], size)
    guard = fit_guard(pooled["train"], pooled["val"], other_pooled)
    save_guard(guard, weights_dir)
    val_d, other_d = guard.distance(pooled["val"]), guard.distance(other_pooled)
    flagged = other_d > guard.threshold
    held_out = np.array([other_d[i] > hard_threshold(val_d, np.delete(other_d, i)) for i in range(len(names))])
    report: dict[str, Any] = {
        "method": "Mahalanobis distance of pooled DenseNet features (Ledoit-Wolf covariance, fitted on train)",
        "threshold": guard.threshold, "caution": guard.caution,
        "threshold_rule": "halfway between the largest validation distance and the smallest non-chest distance",
        "caution_rule": f"{VAL_QUANTILE:.0%} quantile of validation distances",
        "detection": {}, "false_alarm": {}, "caution_rate": {},
        "per_image": {n: round(float(d), 1) for n, d in zip(names, other_d)}}
    for label, prefix in (("skimage pictures", "skimage:"), ("non-chest DICOMs", "dicom:")):
        mask = np.array([n.startswith(prefix) for n in names])
        report["detection"][label] = {"n": int(mask.sum()), "rate": float(flagged[mask].mean()),
                                      "rate_leave_one_out": float(held_out[mask].mean())}
    for split in ("test", "external"):
        distances = guard.distance(pooled[split])
        report["false_alarm"][split] = {"n": int(len(distances)), "rate": float((distances > guard.threshold).mean())}
        report["caution_rate"][split] = float((distances > guard.caution).mean())
    update_sidecar(weights_dir, ood={"file": "ood.safetensors", "threshold": guard.threshold, "caution": guard.caution,
                                     "threshold_rule": report["threshold_rule"], "caution_rule": report["caution_rule"]})
    return report


def evaluate(data_dir: str | Path, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, n_boot: int = 1000,
             fast: bool = False) -> dict[str, Any]:
    weights_dir = Path(weights_dir)
    model, sidecar = load_weights(weights_dir)
    size = int(sidecar["input_size"])
    splits = records_for_splits(data_dir, weights_dir)
    pooled, logits = {}, {}
    for name, recs in splits.items():
        pooled[name], logits[name] = pooled_and_logits(model, load_canonical(data_dir, recs), size, fast=fast)
    splits.pop("train")
    targets = {name: np.array([r.target for r in recs]) for name, recs in splits.items()}
    temperature = fit_temperature(logits["val"], targets["val"])
    update_sidecar(weights_dir, temperature=temperature)
    ood_report = fit_and_measure_guard(model, size, pooled, weights_dir)
    out_dir = weights_dir / "eval"
    out_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {"weights_sha256": sidecar["weights_sha256"], "temperature": temperature,
                              "temperature_fitted_on": "val", "bootstrap_resamples": n_boot, "ood": ood_report,
                              "splits": {}}
    for name, recs in splits.items():
        y, raw = targets[name], softmax(logits[name])
        probs = softmax(logits[name], temperature)
        write_predictions(out_dir / f"{name}_predictions.csv", recs, probs)
        sources = sorted({r.source for r in recs})
        report["splits"][name] = {
            "title": EVAL_SPLITS[name],
            "overall": metrics_report(y, probs, n_boot),
            "by_source": {s: metrics_report(y[mask], probs[mask], n_boot)
                          for s in sources for mask in [np.array([r.source == s for r in recs])]},
            "calibration": {
                "before": {"ece": expected_calibration_error(y, raw), "brier": brier_score(y, raw),
                           "reliability": reliability_bins(y, raw)},
                "after": {"ece": expected_calibration_error(y, probs), "brier": brier_score(y, probs),
                          "reliability": reliability_bins(y, probs)},
            },
        }
    report["gallery_images"] = build_gallery(Path(data_dir), weights_dir, Predictor(weights_dir))
    (out_dir / "metrics.json").write_text(json.dumps(_clean(report), indent=1) + "\n")
    (weights_dir / "MODEL_CARD.md").write_text(render_model_card(read_sidecar(weights_dir), _clean(report)))
    return report


def headline(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"temperature {report['temperature']:.3f} (fitted on validation)"]
    for split in report["splits"].values():
        s, covid = split["overall"]["summary"], split["overall"]["per_class"]["covid"]
        def fmt(m: dict[str, Any]) -> str:
            v, (lo, hi) = m["value"], m["ci95"]
            return "n/a" if v is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
        lines.append(f"{split['title']:>22}: n={split['overall']['n']:4d} accuracy {fmt(s['accuracy'])} "
                     f"macro-F1 {fmt(s['macro_f1'])} covid sensitivity {fmt(covid['sensitivity'])} "
                     f"covid precision {fmt(covid['precision'])}")
    return "\n".join(lines)
