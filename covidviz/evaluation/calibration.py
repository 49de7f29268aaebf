"""Temperature scaling (Guo et al., 2017): one scalar fitted on validation logits.

It divides the logits before the softmax, so the predicted class never changes; only how
confident the probabilities are. The reliability bins feed the dashboard's diagram.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from covidviz.model.inference import softmax


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood."""
    result = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def reliability_bins(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, image count, mean confidence and accuracy (top label)."""
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == y)
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(mask.sum()),
                    "confidence": float(confidence[mask].mean()) if mask.any() else None,
                    "accuracy": float(correct[mask].mean()) if mask.any() else None})
    return out
