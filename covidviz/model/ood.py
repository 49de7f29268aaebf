"""Out-of-distribution guard: is this upload like the chest X-rays the model was trained on?

Score: the Mahalanobis distance of the image's pooled DenseNet features (the 1024 numbers the
classifier reads) from the training images' features, with a Ledoit-Wolf shrunk covariance.
Two levels, neither chosen with the external Hannover set:

- ``caution``: the 99th percentile of the validation images' distances. Above it an image looks unlike
  the training images (another hospital or detector, an unusual projection): the page warns.
- ``threshold``: halfway between the largest validation distance and the smallest distance of the
  offline non-chest images (skimage pictures, non-chest DICOMs from pydicom-data). Above it the
  prediction is flagged as not meaningful. ``evaluate`` reports its detection rate (also leave-one-out,
  since those images helped place it) and its false-alarm rates on internal test and Hannover.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from covidviz.errors import WeightsError
from covidviz.lungs.field import LungCheck
from covidviz.verified import check_sha256, record_sha256

OOD_FILE = "ood.safetensors"
VAL_QUANTILE = 0.99


@dataclass(frozen=True)
class OodGuard:
    mean: np.ndarray
    precision: np.ndarray
    threshold: float  # above: not like a chest X-ray the model knows; the prediction is not meaningful
    caution: float  # above: unlike the training images; read the output with extra care

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.atleast_2d(features) - self.mean
        return np.sqrt(np.einsum("nd,de,ne->n", centred, self.precision, centred))

    def is_outlier(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold


def ood_message(distance: float | None, guard: OodGuard | None) -> str | None:
    """What a reader should be told about an image at this distance (one wording for page, report and CLI)."""
    if distance is None or guard is None or distance <= guard.caution:
        return None
    if distance > guard.threshold:
        return (f"This image is unlike the chest X-rays the model was trained on (feature distance {distance:.0f}, "
                f"flagged above {guard.threshold:.0f}): the prediction is not meaningful for it. It may not be a "
                "frontal chest radiograph.")
    return (f"This image looks unlike the images the model was trained on (feature distance {distance:.0f}; 99% of "
            f"validation images are below {guard.caution:.0f}). It may come from another hospital, detector or "
            "projection: read the output with extra care.")


def colour_message(colourful: bool) -> str | None:
    """The reader's note when the upload was a colour picture (None when it was not). Checked apart from the
    feature distance: a colour photograph can lie as close to the training films' features as an unusual
    film does, so the distance alone cannot be trusted to catch it (README, OOD guard)."""
    if not colourful:
        return None
    return ("This is a colour picture, and radiographs are grayscale: the model gives it no class. Upload the "
            "radiograph itself: a DICOM file, or a grayscale PNG or JPEG export.")


def lung_message(check: LungCheck | None) -> str | None:
    """The reader's note when the lung segmenter found no plausible pair of lungs (None when it did,
    or when the model does not use lung fields)."""
    if check is None or check.plausible:
        return None
    if check.paired:  # found, but too hesitantly: the field was read all the same
        return (f"No plausible pair of lungs was found: {check.reason}. The prediction is not meaningful for this "
                "image. It may not be a frontal chest radiograph.")
    return (f"No plausible pair of lungs was found: {check.reason}. The model read the whole image instead of "
            "the lung field, so the prediction is not meaningful for it. It may not be a frontal chest radiograph.")


def hard_threshold(val_distances: np.ndarray, non_chest_distances: np.ndarray) -> float:
    """Halfway between the farthest validation X-ray and the nearest non-chest image."""
    return float((np.max(val_distances) + np.min(non_chest_distances)) / 2)


def fit_guard(train_features: np.ndarray, val_features: np.ndarray, non_chest_features: np.ndarray) -> OodGuard:
    """Gaussian fitted on training features; thresholds from validation and offline non-chest features.
    scikit-learn is imported here, not with the module: the server only loads a fitted guard, and scikit-learn
    with the SciPy it pulls in would hold about 130 MB there for nothing."""
    from sklearn.covariance import LedoitWolf
    estimator = LedoitWolf().fit(train_features.astype(np.float64))
    unfitted = OodGuard(mean=estimator.location_, precision=estimator.precision_, threshold=np.inf, caution=np.inf)
    val, other = unfitted.distance(val_features), unfitted.distance(non_chest_features)
    return OodGuard(mean=unfitted.mean, precision=unfitted.precision, threshold=hard_threshold(val, other),
                    caution=float(np.quantile(val, VAL_QUANTILE)))


def save_guard(guard: OodGuard, directory: Path) -> Path:
    """Write the guard and its sha256 record (``ood.json``): it is loaded only while the two agree."""
    path = Path(directory) / OOD_FILE
    # float32 on disk: half the size of float64 (8 MB for the 1024 x 1024 precision matrix), and no decision
    # changed on the validation, external and non-chest images when this was measured (README, OOD guard);
    # load_guard computes in float64 all the same
    save_file({"mean": guard.mean.astype(np.float32), "precision": guard.precision.astype(np.float32),
               "thresholds": np.array([guard.threshold, guard.caution])}, str(path))
    record_sha256(path)
    return path


def load_guard(directory: Path) -> OodGuard | None:
    """The fitted guard, or None when the weights folder has none (the page then says it cannot check).

    :class:`WeightsError` when the file no longer matches its sha256 record, or has none: an altered guard
    could silently pass any image as a chest X-ray, so it is refused like altered weights."""
    from safetensors import SafetensorError
    path = Path(directory) / OOD_FILE
    if not path.is_file():
        return None
    check_sha256(path)
    try:
        tensors = load_file(str(path))
        hard, caution = (float(v) for v in tensors["thresholds"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise WeightsError(f"The OOD guard {path} cannot be read ({exc.__class__.__name__}).") from None
    return OodGuard(mean=tensors["mean"].astype(np.float64), precision=tensors["precision"].astype(np.float64),
                    threshold=hard, caution=caution)
