"""The work behind ``python -m covidviz site …``: the drift reference from validation images, and the
site calibration from the verdicts (the CLI in :mod:`covidviz.tools.cli_site` only parses and prints)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.audit.site_report import DRIFT_REFERENCE_FILE
from covidviz.audit.verdict_store import current_verdicts, load_verdicts
from covidviz.evaluation.measures.site_calibration import CalibrationOutcome, logits_from_probabilities, recalibrate
from covidviz.model.inference import softmax
from covidviz.model.predictor import Predictor
from covidviz.model.site_profile import write_profile
from covidviz.verified import read_sidecar


def score_files(predictor: Predictor, files: list[Path]) -> dict[str, np.ndarray]:
    """Drift measures of the files the model can read: probabilities on the shipped temperature, OOD
    distance, and 1.0 where no plausible pair of lungs was found."""
    from covidviz.tools.predict import predict_paths
    probs, distance, no_lungs = [], [], []
    for prediction in predict_paths(predictor, files):
        if prediction.error is not None:
            continue
        probs.append([prediction.probabilities[c] for c in CLASSES])
        distance.append(np.nan if prediction.ood_distance is None else prediction.ood_distance)
        no_lungs.append(np.nan if prediction.lungs_plausible is None else float(not prediction.lungs_plausible))
    shipped_t = float(predictor.sidecar.get("temperature", 1.0))
    p = softmax(logits_from_probabilities(np.array(probs), np.full(len(probs), predictor.temperature)), shipped_t)
    return {**{f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)}, "ood_distance": np.array(distance),
            "no_plausible_lungs": np.array(no_lungs)}


def write_drift_reference(data_dir: str | Path, weights_dir: str | Path) -> Path:
    """``weights/eval/drift_reference.json``: the drift measures of the model's validation images (its own
    split file), the reference that incoming films are compared with."""
    from covidviz.data.split import read_split
    weights_dir = Path(weights_dir)
    files = [Path(data_dir) / f for f in read_split(weights_dir / "split.csv")["val"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} validation images are missing under {data_dir}, e.g. {missing[0]}")
    predictor = Predictor(weights_dir)
    measures = score_files(predictor, files)
    reference = {"split": "val", "n": len(measures["p_covid"]), "weights_sha256": predictor.sidecar["weights_sha256"],
                 "temperature": float(predictor.sidecar.get("temperature", 1.0)),
                 "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "measures": {m: [None if v != v else round(float(v), 5) for v in values]
                              for m, values in measures.items()}}
    path = weights_dir / "eval" / DRIFT_REFERENCE_FILE
    path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    return path


def calibration_data(url: str | None, weights_sha256: str, shipped_temperature: float
                     ) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """The readers' classes, logits and date range of the current verdicts on this model version's results
    (not-assessable left out). Logits come from the probabilities the reader was shown (joined from the
    audit record by sha256) and the temperature that made them."""
    current = current_verdicts(load_verdicts(url))
    rows = current[(current["model_sha256"] == weights_sha256) & current["reader_class"].isin(CLASSES)]
    y = rows["reader_class"].map(CLASSES.index).to_numpy(int)
    probs = rows[[f"p_{c}" for c in CLASSES]].to_numpy(float)
    used = rows["temperature"].astype("float64").fillna(shipped_temperature).to_numpy()
    first = rows["created_at"].min() if len(rows) else None
    last = rows["created_at"].max() if len(rows) else None
    return y, logits_from_probabilities(probs, used) if len(rows) else np.zeros((0, len(CLASSES))), first, last


def calibrate_site(url: str | None, weights_dir: str | Path, *, min_per_class: int, seed: int = 0,
                   write: bool = True) -> tuple[CalibrationOutcome, dict[str, Any] | None]:
    """Fit and judge a site temperature on the verdicts; write a new profile only when the held-out half
    shows an improvement (and ``write``). Returns the outcome and the profile written, if any."""
    from covidviz.model.site_profile import calibration_for
    sidecar = read_sidecar(weights_dir)
    in_use = calibration_for(sidecar)
    y, logits, first, last = calibration_data(url, sidecar["weights_sha256"], float(sidecar.get("temperature", 1.0)))
    outcome = recalibrate(y, logits, in_use.temperature, min_per_class=min_per_class, seed=seed)
    if not (outcome.accepted and write):
        return outcome, None
    profile = write_profile({
        "model_name": sidecar.get("name"), "model_sha256": sidecar["weights_sha256"],
        "temperature": outcome.temperature, "replaces_temperature": outcome.current_temperature,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdicts": {"n": int(len(y)), "n_fit": outcome.n_fit, "n_held_out": outcome.n_held_out,
                     "counts": outcome.counts, "first": first.isoformat(), "last": last.isoformat()},
        "held_out": outcome.held_out, "method": "temperature scaling on readers' verdicts, stratified halves, "
                                                "paired bootstrap of held-out NLL"})
    return outcome, profile
