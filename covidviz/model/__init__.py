"""The classifier: network, verified weights and sidecar, the one preprocessing path, inference and
its engines (PyTorch, ONNX Runtime), the calibrated predictor and the out-of-distribution guard.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    network=("ARCHITECTURES", "GapClassifier", "CxrDenseNet", "build_model", "architecture"),
    weights=("load_weights", "save_weights", "load_verified", "save_verified"),
    sidecar=("update_sidecar",),
    preprocessing=(
        "canonical_image", "canonical_with_box", "model_batch", "CropBox", "Prepared", "prepare",
        "lung_field_image"
    ),
    inference=("predict_canonical", "pooled_and_logits"),
    engine=("ENGINES", "ForwardPass", "TorchEngine", "OnnxRuntimeEngine", "build_engine", "export_onnx"),
    predictor=("Predictor", "Prediction"),
    ood=("OodGuard", "load_guard"),
)
