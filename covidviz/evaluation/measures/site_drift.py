"""Has the stream of incoming films moved away from what the model was validated on? (pure functions)

The stated test is the population stability index (PSI) of each measure between the validation reference
and a recent window of predictions:

    PSI = sum over bins of (recent share - reference share) * ln(recent share / reference share)

with ten bins at the reference's deciles for a continuous measure (each class probability, the OOD
distance) and two for a yes/no one (no plausible pair of lungs). Thresholds, the usual ones for PSI:
below 0.1 stable, 0.1 to 0.25 a warning, 0.25 or more an alarm. A window of fewer than ``MIN_WINDOW``
predictions is not judged (PSI is biased upwards on small samples, by about (bins - 1) / n).

The two-sample Kolmogorov-Smirnov p-value, Bonferroni-corrected over the measures, is reported beside
each PSI for readers who prefer a test with a stated error rate; the alarm itself is the PSI threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

PSI_WARN, PSI_ALARM = 0.1, 0.25
MIN_WINDOW = 100
N_BINS = 10
SHARE_FLOOR = 1e-4  # an empty bin's share, so that one empty bin does not make the index infinite
BINARY = ("no_plausible_lungs",)
MAX_POINTS = 200  # points of the chart over time, however long the history


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), SHARE_FLOOR)


def psi(reference: np.ndarray, recent: np.ndarray, binary: bool = False) -> float:
    """Population stability index of ``recent`` against ``reference`` (NaNs dropped)."""
    reference = np.asarray(reference, float)
    recent = np.asarray(recent, float)
    reference, recent = reference[~np.isnan(reference)], recent[~np.isnan(recent)]
    if len(reference) == 0 or len(recent) == 0:
        return float("nan")
    edges = np.array([0.5]) if binary else np.unique(np.quantile(reference, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    expected, actual = _shares(reference, edges), _shares(recent, edges)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def level(value: float | None) -> str:
    """"stable", "warning", "alarm", or "not judged" (no value)."""
    if value is None or value != value:
        return "not judged"
    return "alarm" if value >= PSI_ALARM else "warning" if value >= PSI_WARN else "stable"


def drift_figures(reference: Mapping[str, Sequence[float]], recent: Mapping[str, Sequence[float]],
                  min_window: int = MIN_WINDOW) -> dict[str, Any]:
    """Per measure present in both: PSI, its level, the Bonferroni-corrected KS p-value and the sizes.
    ``alarm`` is True when any judged measure reaches :data:`PSI_ALARM`."""
    measures = [m for m in reference if m in recent]
    out: dict[str, Any] = {"measures": {}, "psi_warn": PSI_WARN, "psi_alarm": PSI_ALARM, "min_window": min_window}
    for m in measures:
        ref = np.asarray(reference[m], float)
        new = np.asarray(recent[m], float)
        ref, new = ref[~np.isnan(ref)], new[~np.isnan(new)]
        judged = len(new) >= min_window and len(ref) > 0
        value = psi(ref, new, binary=m in BINARY) if judged else None
        value = None if value is None or np.isnan(value) else value
        p_value = None
        if judged and m not in BINARY:
            p_value = float(min(1.0, ks_2samp(ref, new).pvalue * len(measures)))
        out["measures"][m] = {"psi": value, "level": level(value), "ks_p_bonferroni": p_value,
                              "n_reference": int(len(ref)), "n_recent": int(len(new))}
    out["alarm"] = any(v["level"] == "alarm" for v in out["measures"].values())
    out["warning"] = any(v["level"] == "warning" for v in out["measures"].values())
    return out


def drift_over_time(reference: Mapping[str, Sequence[float]], stream: Mapping[str, Sequence[float]],
                    window: int = MIN_WINDOW * 2, step: int | None = None) -> list[dict[str, Any]]:
    """PSI of each measure over a sliding window of the last ``window`` predictions, every ``step`` of
    them (default a quarter window, coarser where that would exceed ``MAX_POINTS``), for the chart over time. ``stream`` holds equally long sequences in
    arrival order; each point names the index its window ends at."""
    n = min((len(v) for v in stream.values()), default=0)
    step = step or max(window // 4, n // MAX_POINTS, 1)
    ends = list(range(min(window, n), n + 1, step)) if n >= min(window, MIN_WINDOW) else []
    if ends and ends[-1] != n:
        ends.append(n)  # the newest window is always a point
    points = []
    for end in ends:
        start = max(0, end - window)
        recent = {m: np.asarray(v, float)[start:end] for m, v in stream.items()}
        figures = drift_figures(reference, recent, min_window=min(window, MIN_WINDOW))
        points.append({"end": end, "alarm": figures["alarm"],
                       **{m: f["psi"] for m, f in figures["measures"].items()}})
    return points
