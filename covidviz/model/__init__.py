"""The classifier: network, verified weights and sidecar, the one preprocessing path, inference and
its engines (PyTorch, ONNX Runtime, OpenVINO fp32 and INT8), the calibrated predictor and the out-of-distribution guard.
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
    forward_pass=("ENGINES", "EXACT_ENGINES", "ForwardPass", "Engine"),
    engine=("TorchEngine", "OnnxRuntimeEngine", "build_engine", "export_onnx"),
    openvino_engine=("OpenVinoEngine", "Int8Engine", "int8_record", "allow_int8"),
    predictor=("Predictor", "Prediction"),
    ood=("OodGuard", "load_guard"),
)
