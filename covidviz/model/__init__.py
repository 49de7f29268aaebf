"""The classifier: network, verified weights and sidecar, the one preprocessing path, inference,
the calibrated predictor and the out-of-distribution guard.
"""

from covidviz._lazy import lazy_exports

_EXPORTS = {
    "CxrDenseNet": "network",
    "build_model": "network",
    "load_weights": "weights",
    "save_weights": "weights",
    "load_verified": "weights",
    "save_verified": "weights",
    "read_sidecar": "sidecar",
    "canonical_image": "preprocessing",
    "canonical_with_box": "preprocessing",
    "model_batch": "preprocessing",
    "CropBox": "preprocessing",
    "Prepared": "preprocessing",
    "prepare": "preprocessing",
    "lung_field_image": "preprocessing",
    "predict_canonical": "inference",
    "pooled_and_logits": "inference",
    "Predictor": "predictor",
    "Prediction": "predictor",
    "OodGuard": "ood",
    "load_guard": "ood",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
