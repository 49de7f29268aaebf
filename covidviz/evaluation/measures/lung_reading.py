"""The measures that say whether the model reads the lungs, for any model on the same images.

Pure functions over predictions (no model, no files), so the previous model and the new one are
measured by the same code on the same rows:

- internal test under the argmax rule (accuracy, macro F1, COVID-19 sensitivity and precision);
- the external sets: COVID-19 sensitivity on Hannover, specificity (not called COVID-19) on Shenzhen
  normals, and the COVID-19 ROC AUC over both;
- within-source contrasts, where class does not follow source: COVID-19 vs the rest inside SIIM and
  inside ieee8023;
- the median share of Grad-CAM energy inside the lung mask, per split and true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from covidviz import CLASSES
from covidviz.evaluation.measures.metrics import macro_f1, roc_auc
from covidviz.evaluation.measures.report import bootstrap

COVID = CLASSES.index("covid")
NORMAL = CLASSES.index("normal")
WITHIN_SOURCES = ("SIIM", "ieee8023")  # the pool's sources holding COVID-19 and other films alike
EXTERNAL_COVID, EXTERNAL_NORMAL = "Hannover", "Shenzhen"


def _with_ci(fn, y: np.ndarray, probs: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    if len(y) == 0:
        return {name: {"value": None, "ci95": [None, None]} for name in fn(np.zeros(1, int), np.ones((1, 3)) / 3)}
    return bootstrap(lambda yy, pp: {"m": fn(yy, pp)}, y, probs, n_boot, seed)["m"]


def _argmax_measures(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    predicted = probs.argmax(1)
    called_covid, is_covid = predicted == COVID, y == COVID
    return {"accuracy": float((predicted == y).mean()) if len(y) else float("nan"),
            "macro_f1": macro_f1(y, predicted, len(CLASSES)),
            "covid_sensitivity": float(called_covid[is_covid].mean()) if is_covid.any() else float("nan"),
            "covid_precision": float(is_covid[called_covid].mean()) if called_covid.any() else float("nan")}


def _external_measures(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    predicted = probs.argmax(1)
    covid, normal = y == COVID, y == NORMAL
    nan = float("nan")
    return {"hannover_covid_sensitivity": float((predicted[covid] == COVID).mean()) if covid.any() else nan,
            "shenzhen_specificity": float((predicted[normal] != COVID).mean()) if normal.any() else nan,
            "shenzhen_called_normal": float((predicted[normal] == NORMAL).mean()) if normal.any() else nan,
            "covid_roc_auc": roc_auc(covid, probs[:, COVID])}


def _covid_auc(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"covid_roc_auc": roc_auc(y == COVID, probs[:, COVID])}


def reads_the_lungs(test: tuple[np.ndarray, np.ndarray, Sequence[str]],
                    external: tuple[np.ndarray, np.ndarray, Sequence[str]],
                    lung_shares: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    n_boot: int = 1000) -> dict[str, Any]:
    """The headline measures with 95% bootstrap intervals.

    ``test`` and ``external`` are (true class indices, N x K probabilities, source names);
    ``lung_shares`` maps a split name to (true class indices, share of the predicted class's Grad-CAM
    energy inside the lungs; NaN where no lungs were found)."""
    y, probs, sources = test
    ey, eprobs, esources = external
    ext_rows = np.isin(np.asarray(esources), (EXTERNAL_COVID, EXTERNAL_NORMAL))
    out: dict[str, Any] = {
        "internal_test": {"n": int(len(y)), **_with_ci(_argmax_measures, y, probs, n_boot)},
        "external": {"n_covid": int((ey[ext_rows] == COVID).sum()), "n_normal": int((ey[ext_rows] == NORMAL).sum()),
                     **_with_ci(_external_measures, ey[ext_rows], eprobs[ext_rows], n_boot)},
        "within_source": {},
        "lung_energy": {},
    }
    for source in WITHIN_SOURCES:
        rows = np.asarray(sources) == source
        out["within_source"][source] = {"n_covid": int((y[rows] == COVID).sum()),
                                        "n_other": int((y[rows] != COVID).sum()),
                                        **_with_ci(_covid_auc, y[rows], probs[rows], n_boot)}
    out["lung_energy"] = lung_energy_summary(lung_shares or {})
    return out


def lung_energy_summary(lung_shares: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per split: the median share of CAM energy inside the lungs, overall and per true class, over the
    images whose lungs were found (NaN shares are the others)."""
    out = {}
    for split, (y, shares) in lung_shares.items():
        found = ~np.isnan(shares)
        out[split] = {
            "median": float(np.median(shares[found])) if found.any() else None,
            "n_with_lungs": int(found.sum()), "n": int(len(shares)),
            "by_class": {c: float(np.median(shares[found & (y == k)])) if (found & (y == k)).any() else None
                         for k, c in enumerate(CLASSES)}}
    return out
