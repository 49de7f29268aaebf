"""``python -m covidviz evaluate``: predictions and metrics for validation, internal test and the
external sets (Hannover COVID-19, Shenzhen normals), written to ``weights/eval/`` so the dashboard never
runs the model for them.

The temperature is fitted on validation only and stored in the sidecar; the external sets choose
nothing (no checkpoint, threshold or temperature). With ``previous`` (an earlier model's weights
folder) the same headline measures are computed for it on the same rows, for a side-by-side view.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.data.collection import Record, load_prepared, radiologist_labels, read_metadata
from covidviz.data.ood_sets import non_chest_dicoms, skimage_pictures
from covidviz.data.split import read_split
from covidviz.evaluation.artifacts.gallery import build_gallery
from covidviz.evaluation.artifacts.saved import SPLIT_TITLES
from covidviz.evaluation.documents.facts import fmt_ci, load_artifacts
from covidviz.evaluation.documents.model_card import render_model_card
from covidviz.evaluation.measures.calibration import fit_temperature
from covidviz.evaluation.measures.lung_reading import lung_energy_summary, reads_the_lungs
from covidviz.evaluation.measures.metrics import brier_score, expected_calibration_error, reliability_bins
from covidviz.evaluation.measures.report import metrics_report
from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
from covidviz.io.xray import COLOUR_THRESHOLD
from covidviz.lungs.field import lung_energy
from covidviz.lungs.segmenter import LungSegmenter
from covidviz.model.inference import pooled_and_logits, softmax
from covidviz.model.ood import VAL_QUANTILE, fit_guard, hard_threshold, save_guard
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from covidviz.model.sidecar import update_sidecar
from covidviz.paths import WEIGHTS_DIR
from covidviz.verified import read_sidecar


def records_for_splits(data_dir: str | Path, weights_dir: Path) -> dict[str, list[Record]]:
    """Validation and test records from the model's own split file (with the labels it was trained on);
    external from the metadata."""
    records = read_metadata(data_dir)
    if read_sidecar(weights_dir).get("data", {}).get("labels", "").startswith("NIH: RSNA"):
        records = radiologist_labels(records)
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


def nan_to_null(value: Any) -> Any:
    """JSON has no NaN: undefined metrics become null (in nested dicts and lists too)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_null(v) for v in value]
    return value


def write_metrics(out_dir: Path, report: dict[str, Any]) -> None:
    """``metrics.json`` as every evaluation writes it (undefined values as null)."""
    (out_dir / "metrics.json").write_text(json.dumps(nan_to_null(report), indent=1) + "\n")


def fit_and_measure_guard(predictor: Predictor, pooled: dict[str, np.ndarray], no_lungs: dict[str, np.ndarray],
                          weights_dir: Path) -> dict[str, Any]:
    """Fit the OOD guard (train features; thresholds from validation and offline non-chest images), save it,
    and measure it: detection on the non-chest images (also leave-one-out), false alarms on test and external.
    An image is flagged when its distance is above the threshold, it is a colour picture, or (lung-field
    models) no plausible pair of lungs was found; each part is reported on its own too. The pool's films are
    all grayscale, so the colour check raises no false alarm on test or external."""
    others = {**skimage_pictures(), **non_chest_dicoms()}
    names = sorted(others)
    prepared = predictor.prepare([others[n].pixels for n in names])
    other_pooled, _ = pooled_and_logits(predictor.model, [p.image for p in prepared], predictor.input_size)
    other_no_lungs = np.array([p.check is not None and not p.check.plausible for p in prepared])
    other_colour = np.array([others[n].colourful for n in names])
    guard = fit_guard(pooled["train"], pooled["val"], other_pooled)
    save_guard(guard, weights_dir)
    val_d, other_d = guard.distance(pooled["val"]), guard.distance(other_pooled)
    flagged = (other_d > guard.threshold) | other_no_lungs | other_colour
    held_out = other_no_lungs | other_colour | np.array([other_d[i] > hard_threshold(val_d, np.delete(other_d, i))
                                          for i in range(len(names))])
    report: dict[str, Any] = {
        "method": "Mahalanobis distance of pooled DenseNet features (Ledoit-Wolf covariance, fitted on train)",
        "threshold": guard.threshold, "caution": guard.caution,
        "threshold_rule": "halfway between the largest validation distance and the smallest non-chest distance",
        "caution_rule": f"{VAL_QUANTILE:.0%} quantile of validation distances",
        "lung_check": "flagged too when the lung segmenter finds no plausible pair of lungs"
                      if predictor.segmenter is not None else None,
        "colour_check": f"flagged too when the upload is a colour picture (mean |channel - gray| > {COLOUR_THRESHOLD})",
        "detection": {}, "false_alarm": {}, "caution_rate": {},
        "per_image": {n: round(float(d), 1) for n, d in zip(names, other_d)}}
    for label, prefix in (("skimage pictures", "skimage:"), ("non-chest DICOMs", "dicom:")):
        mask = np.array([n.startswith(prefix) for n in names])
        report["detection"][label] = {"n": int(mask.sum()), "rate": float(flagged[mask].mean()),
                                      "rate_leave_one_out": float(held_out[mask].mean()),
                                      "rate_distance_only": float((other_d[mask] > guard.threshold).mean()),
                                      "rate_lung_check_only": float(other_no_lungs[mask].mean()),
                                      "rate_colour_check_only": float(other_colour[mask].mean())}
    for split in ("test", "external"):
        distances = guard.distance(pooled[split])
        far = distances > guard.threshold
        report["false_alarm"][split] = {"n": int(len(distances)), "rate": float((far | no_lungs[split]).mean()),
                                        "rate_distance_only": float(far.mean()),
                                        "rate_lung_check_only": float(no_lungs[split].mean())}
        report["caution_rate"][split] = float((distances > guard.caution).mean())
    update_sidecar(weights_dir, ood={"file": "ood.safetensors", "threshold": guard.threshold, "caution": guard.caution,
                                     "threshold_rule": report["threshold_rule"], "caution_rule": report["caution_rule"]})
    return report


def read_split_set(predictor: Predictor, data_dir: str | Path, records: list[Record], with_cams: bool,
                   measure_with: LungSegmenter | None = None) -> dict[str, np.ndarray]:
    """Pooled features, logits, lung-field and lung-plausibility flags and (``with_cams``) each image's share
    of its predicted class's Grad-CAM energy inside the lungs, beside the share a map spread evenly over the
    same grid puts there (NaN where no lungs were found): one forward pass per batch.

    ``measure_with`` outlines the lungs for a whole-image model (which has no segmenter of its own)
    without changing what it reads."""
    if predictor.segmenter is None and measure_with is not None:
        prepared = load_prepared(data_dir, records, measure_with, crop=False)
    else:
        prepared = load_prepared(data_dir, records, predictor.segmenter)
    if not with_cams:
        pooled, logits = pooled_and_logits(predictor.model, prepared.images, predictor.input_size)
        return {"pooled": pooled, "logits": logits, "lung_field": prepared.lung_field,
                "lungs_plausible": prepared.lungs_plausible}
    pooled, logits, shares, areas = [], [], [], []
    for start in range(0, len(records), 32):
        chunk = slice(start, start + 32)
        result = gradcam_all_classes(predictor.model, model_batch(prepared.images[chunk], predictor.input_size))
        pooled.append(result.pooled)
        logits.append(result.logits)
        for maps, lungs, found, row in zip(result.maps, prepared.lungs[chunk], prepared.lungs_found[chunk],
                                           result.logits):
            shares.append(lung_energy(maps[int(np.argmax(row))], lungs) if found else float("nan"))
            areas.append(lung_energy(np.ones_like(maps[0]), lungs) if found else float("nan"))
    return {"pooled": np.concatenate(pooled), "logits": np.concatenate(logits),
            "lung_field": prepared.lung_field, "lungs_plausible": prepared.lungs_plausible,
            "lung_share": np.array(shares, dtype=float), "lung_area": np.array(areas, dtype=float)}


def headline_for(predictor: Predictor, data_dir: str | Path, splits: dict[str, list[Record]], n_boot: int,
                 sets: dict[str, dict[str, np.ndarray]] | None = None, measure_with: LungSegmenter | None = None
                 ) -> dict[str, Any]:
    """:func:`~covidviz.evaluation.measures.lung_reading.reads_the_lungs` for one model on the given test and external rows."""
    sets = sets or {name: read_split_set(predictor, data_dir, splits[name], with_cams=True, measure_with=measure_with)
                    for name in ("test", "external")}
    def triple(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        recs = splits[name]
        return (np.array([r.target for r in recs]), softmax(sets[name]["logits"], predictor.temperature),
                [r.source for r in recs])
    shares = {name: (np.array([r.target for r in splits[name]]), sets[name]["lung_share"])
              for name in sets if "lung_share" in sets[name]}
    measures = reads_the_lungs(triple("test"), triple("external"), shares, n_boot)
    measures["lung_area_share"] = lung_energy_summary(
        {name: (shares[name][0], sets[name]["lung_area"]) for name in shares})
    measures["lung_field_found"] = {name: float(sets[name]["lung_field"].mean()) for name in sets} \
        if predictor.segmenter is not None else None
    return measures


def evaluate(data_dir: str | Path, weights_dir: str | Path = WEIGHTS_DIR, n_boot: int = 1000,
             previous: str | Path | None = None) -> dict[str, Any]:
    weights_dir = Path(weights_dir)
    predictor = Predictor(weights_dir)
    sidecar = predictor.sidecar
    splits = records_for_splits(data_dir, weights_dir)
    sets = {name: read_split_set(predictor, data_dir, recs, with_cams=name != "train")
            for name, recs in splits.items()}
    pooled = {name: s["pooled"] for name, s in sets.items()}
    logits = {name: s["logits"] for name, s in sets.items()}
    splits.pop("train")
    targets = {name: np.array([r.target for r in recs]) for name, recs in splits.items()}
    temperature = fit_temperature(logits["val"], targets["val"])
    update_sidecar(weights_dir, temperature=temperature)
    predictor.temperature = temperature
    no_lungs = {name: ~s["lungs_plausible"] if predictor.segmenter is not None else np.zeros(len(s["lung_field"]), bool)
                for name, s in sets.items()}
    ood_report = fit_and_measure_guard(predictor, pooled, no_lungs, weights_dir)
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
            "title": SPLIT_TITLES[name],
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
    report["reads_the_lungs"] = headline_for(predictor, data_dir, splits, n_boot,
                                             {name: sets[name] for name in ("test", "external")})
    report["reads_the_lungs"]["lung_energy"].update(lung_energy_summary(
        {"val": (targets["val"], sets["val"]["lung_share"])}))
    report["reads_the_lungs"]["lung_area_share"].update(lung_energy_summary(
        {"val": (targets["val"], sets["val"]["lung_area"])}))
    if previous is not None:
        report["previous"] = previous_model(Path(previous), data_dir, splits, n_boot, predictor.segmenter)
    build_gallery(Path(data_dir), weights_dir, predictor)  # its index is the record: fit-decision rebuilds it
    write_metrics(out_dir, report)
    # the card from the artifacts as written, as `facts` renders it (explain-check's section included)
    (weights_dir / "MODEL_CARD.md").write_text(render_model_card(*load_artifacts(weights_dir)))
    return report


def previous_model(weights_dir: Path, data_dir: str | Path, splits: dict[str, list[Record]], n_boot: int,
                   segmenter: LungSegmenter | None = None) -> dict[str, Any]:
    """The earlier model's headline measures on this model's test and external rows (its own preprocessing
    and temperature; its heatmaps measured against this model's lung segmenter's outlines). Valid because
    the new split kept every earlier patient's side of the boundary."""
    predictor = Predictor(weights_dir)
    return {"name": predictor.sidecar.get("name", ""), "weights_sha256": predictor.sidecar["weights_sha256"],
            "folder": weights_dir.name, **headline_for(predictor, data_dir, splits, n_boot, measure_with=segmenter)}


def headline(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"temperature {report['temperature']:.3f} (fitted on validation)"]
    fmt = fmt_ci
    for split in report["splits"].values():
        s, covid = split["overall"]["summary"], split["overall"]["per_class"]["covid"]
        lines.append(f"{split['title']:>22}: n={split['overall']['n']:4d} accuracy {fmt(s['accuracy'])} "
                     f"macro-F1 {fmt(s['macro_f1'])} covid sensitivity {fmt(covid['sensitivity'])} "
                     f"covid precision {fmt(covid['precision'])}")
    for label, measures in (("this model", report.get("reads_the_lungs")), ("previous", report.get("previous"))):
        if measures:
            ext, siim = measures["external"], measures["within_source"]["SIIM"]
            energy = measures["lung_energy"].get("test", {}).get("median")
            lines.append(f"{label:>22}: Hannover sensitivity {fmt(ext['hannover_covid_sensitivity'])}, Shenzhen "
                         f"specificity {fmt(ext['shenzhen_specificity'])}, external AUC {fmt(ext['covid_roc_auc'])}, "
                         f"SIIM AUC {fmt(siim['covid_roc_auc'])}, median lung energy "
                         f"{'n/a' if energy is None else f'{energy:.2f}'}")
    return "\n".join(lines)
