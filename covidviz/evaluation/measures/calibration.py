"""Temperature scaling (Guo et al., 2017): one scalar fitted on validation logits.

It divides the logits before the softmax, so the predicted class never changes; only how
confident the probabilities are. The reliability bins that feed the dashboard's diagram live in
:mod:`covidviz.evaluation.measures.metrics`, beside the ECE that shares them.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from covidviz.evaluation.measures.metrics import negative_log_likelihood
from covidviz.model.inference import softmax


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood."""
    result = minimize_scalar(lambda log_t: negative_log_likelihood(y, softmax(logits, float(np.exp(log_t)))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
