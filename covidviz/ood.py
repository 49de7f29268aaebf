"""Out-of-distribution guard: is this upload like the chest X-rays the model was trained on?

Score: the Mahalanobis distance of the image's pooled DenseNet features (the 1024 numbers the
classifier reads) from the training images' features, with a Ledoit-Wolf shrunk covariance.
Threshold: the 99th percentile of the validation images' distances, so about 1% of real chest
X-rays like the pool are flagged. Its detection and false-alarm rates on offline non-chest images
(skimage pictures, non-chest DICOMs from pydicom-data) are measured by ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.covariance import LedoitWolf

OOD_FILE = "ood.safetensors"
VAL_QUANTILE = 0.99


@dataclass(frozen=True)
class OodGuard:
    mean: np.ndarray
    precision: np.ndarray
    threshold: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.atleast_2d(features) - self.mean
        return np.sqrt(np.einsum("nd,de,ne->n", centred, self.precision, centred))

    def is_outlier(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold


def fit_guard(train_features: np.ndarray, val_features: np.ndarray) -> OodGuard:
    """Gaussian fitted on training features; threshold set on validation features only."""
    estimator = LedoitWolf().fit(train_features.astype(np.float64))
    guard = OodGuard(mean=estimator.location_, precision=estimator.precision_, threshold=np.inf)
    threshold = float(np.quantile(guard.distance(val_features), VAL_QUANTILE))
    return OodGuard(mean=guard.mean, precision=guard.precision, threshold=threshold)


def save_guard(guard: OodGuard, directory: Path) -> Path:
    path = Path(directory) / OOD_FILE
    save_file({"mean": guard.mean, "precision": guard.precision, "threshold": np.array([guard.threshold])}, str(path))
    return path


def load_guard(directory: Path) -> OodGuard | None:
    """The fitted guard, or None when the weights folder has none (the page then says it cannot check)."""
    path = Path(directory) / OOD_FILE
    if not path.is_file():
        return None
    tensors = load_file(str(path))
    return OodGuard(mean=tensors["mean"], precision=tensors["precision"], threshold=float(tensors["threshold"][0]))


def pooled_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """What the classifier reads: ReLU then global average pooling of the ``features`` output."""
    return torch.relu(model.features(batch)).mean(dim=(2, 3))
