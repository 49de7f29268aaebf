"""The site's figures from its verdicts and its audit log, per model version: what ``site report`` prints
and the Site performance page shows (one function for both, so they cannot disagree)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidviz import CLASSES
from covidviz.audit.query import AuditFilter, in_date_range, load_records
from covidviz.audit.verdict_store import current_verdicts, load_verdicts
from covidviz.evaluation.measures.site_calibration import logits_from_probabilities
from covidviz.evaluation.measures.site_drift import MIN_WINDOW, drift_figures, drift_over_time
from covidviz.evaluation.measures.site_measures import site_figures
from covidviz.model.decision import ARGMAX_RULE, DecisionRule, rule_from_sidecar
from covidviz.model.inference import softmax
from covidviz.verified import read_sidecar

DRIFT_REFERENCE_FILE = "drift_reference.json"  # under weights/eval/: written by `site drift-reference`
DRIFT_MEASURES = (*(f"p_{c}" for c in CLASSES), "ood_distance", "no_plausible_lungs")
DEFAULT_WINDOW = 2 * MIN_WINDOW


@dataclass(frozen=True)
class VerdictFilter:
    """Which verdicts count: a date range (of the verdict) and readers; None or empty: no restriction."""

    since: datetime | None = None
    until: datetime | None = None
    readers: tuple[str, ...] = ()


def filter_verdicts(current: pd.DataFrame, flt: VerdictFilter) -> pd.DataFrame:
    keep = in_date_range(current, flt.since, flt.until)
    if flt.readers:
        keep &= current["reader"].isin(flt.readers)
    return current[keep]


def figures_of(verdicts: pd.DataFrame, n_boot: int, rule: DecisionRule = ARGMAX_RULE) -> dict[str, Any]:
    """:func:`site_figures` of a table of current verdicts, the model's classes by ``rule``."""
    probs = verdicts[[f"p_{c}" for c in CLASSES]].to_numpy(float) if len(verdicts) else np.zeros((0, len(CLASSES)))
    classes = [c if isinstance(c, str) else None for c in verdicts["reader_class"]]
    return site_figures(classes, probs, n_boot=n_boot, rule=rule)


def verdict_figures(current: pd.DataFrame, n_boot: int = 1000, rule: DecisionRule = ARGMAX_RULE) -> dict[str, Any]:
    """Figures of all the verdicts given, pooled, and per model version (``by_model``), with the date range;
    the model's classes by ``rule`` (the shipped model's decision rule)."""
    out = figures_of(current, n_boot, rule)
    out["by_model"] = {str(version): figures_of(rows, n_boot, rule)
                       for version, rows in current.groupby(current["model_version"].fillna("unknown"))}
    out["first"] = current["created_at"].min().isoformat() if len(current) else None
    out["last"] = current["created_at"].max().isoformat() if len(current) else None
    return out


def load_drift_reference(weights_dir: str | Path) -> dict[str, Any] | None:
    path = Path(weights_dir) / "eval" / DRIFT_REFERENCE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def drift_stream(records: pd.DataFrame, shipped_temperature: float) -> dict[str, np.ndarray]:
    """The drift measures of prediction records in arrival order. Probabilities are put back on the shipped
    temperature (the reference's), so a site profile coming into use is not itself taken for drift."""
    rows = records[records["kind"] == "prediction"].sort_values(["created_at", "id"])
    probs = rows[[f"p_{c}" for c in CLASSES]].to_numpy(float)
    used = rows["temperature"].astype("float64").fillna(shipped_temperature).to_numpy() if "temperature" in rows \
        else np.full(len(rows), shipped_temperature)
    shipped = softmax(logits_from_probabilities(probs, used), shipped_temperature) if len(rows) else probs
    plausible = rows["lung_field_plausible"]
    return {**{f"p_{c}": shipped[:, k] for k, c in enumerate(CLASSES)},
            "ood_distance": rows["ood_distance"].astype("float64").to_numpy(),
            "no_plausible_lungs": plausible.map(lambda v: np.nan if v is None or v != v else float(not v))
            .astype("float64").to_numpy(),
            "created_at": rows["created_at"].to_numpy()}


def drift_report(records: pd.DataFrame, reference: dict[str, Any] | None, window: int = DEFAULT_WINDOW,
                 over_time: bool = True) -> dict[str, Any]:
    """Per model version the reference was made for: PSI of the last ``window`` predictions against the
    validation reference, and (``over_time``) the sliding PSI over time. Other versions: said to have no
    reference."""
    if reference is None:
        return {"reference": None, "note": "no drift reference: run `python -m covidviz site drift-reference`",
                "by_model": {}, "alarm": False}
    out: dict[str, Any] = {"reference": {k: reference[k] for k in ("split", "n", "weights_sha256")},
                           "window": window, "by_model": {}, "alarm": False}
    predictions = records[records["kind"] == "prediction"]
    for version, rows in predictions.groupby(predictions["model_version"].fillna("unknown")):
        if not str(reference["weights_sha256"]).startswith(str(version)):
            out["by_model"][str(version)] = {"note": "no reference for this model version", "n": int(len(rows))}
            continue
        stream = drift_stream(rows, float(reference["temperature"]))
        times = stream.pop("created_at")
        measures = {m: stream[m] for m in DRIFT_MEASURES}
        figures = drift_figures(reference["measures"], {m: v[-window:] for m, v in measures.items()})
        points = drift_over_time(reference["measures"], measures, window=window) if over_time else []
        for point in points:
            point["at"] = pd.Timestamp(times[point["end"] - 1]).isoformat()
        out["by_model"][str(version)] = {**figures, "n": int(len(rows)), "over_time": points}
        out["alarm"] |= figures["alarm"]
    return out


def site_report(url: str | None, weights_dir: str | Path, flt: VerdictFilter = VerdictFilter(),
                n_boot: int = 1000, window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """Everything ``site report`` prints: the verdict figures (filtered) and the drift figures."""
    current = filter_verdicts(current_verdicts(load_verdicts(url)), flt)
    report = verdict_figures(current, n_boot, rule_from_sidecar(read_sidecar(Path(weights_dir))))
    records = load_records(url, AuditFilter(kinds=("prediction",), since=flt.since, until=flt.until))
    report["drift"] = drift_report(records, load_drift_reference(weights_dir), window)
    return report
