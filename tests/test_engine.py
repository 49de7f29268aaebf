"""The inference engines: ONNX Runtime on an export of the verified weights gives PyTorch's numbers and
maps, the export cache is checked before use, and the choice is measured, not assumed."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from covidviz.explain.cam.fast_gradcam import cam_pass, gradcam_all_classes
from covidviz.model.engine import (
    OnnxRuntimeEngine,
    TorchEngine,
    build_engine,
    cached_onnx,
    export_onnx,
    pick_exact,
    probe_batch,
)
from covidviz.model.precision import native_bf16
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from tests.conftest import FIXTURES, WEIGHTS


@pytest.fixture(scope="module")
def torch_predictor() -> Predictor:
    return Predictor(WEIGHTS, engine="torch")


@pytest.fixture(scope="module")
def onnx_predictor() -> Predictor:
    return Predictor(WEIGHTS, engine="onnxruntime")


@pytest.fixture(scope="module")
def canonical(torch_predictor) -> list[np.ndarray]:
    from covidviz.io.loading import load_xray_file
    grays = [load_xray_file(p).pixels for p in sorted(FIXTURES.glob("*.png"))]
    return [p.image for p in torch_predictor.prepare(grays)]


def test_onnx_runtime_gives_pytorchs_logits_features_and_labels(torch_predictor, onnx_predictor, canonical):
    assert onnx_predictor.engine.name == "onnxruntime" and torch_predictor.engine.name == "torch"
    ours, theirs = onnx_predictor.forward(canonical), torch_predictor.forward(canonical)
    np.testing.assert_allclose(ours.logits, theirs.logits, atol=1e-4)
    np.testing.assert_allclose(ours.feature_map, theirs.feature_map, atol=1e-3)
    assert (ours.logits.argmax(1) == theirs.logits.argmax(1)).all()
    np.testing.assert_allclose(onnx_predictor.probabilities(canonical), torch_predictor.probabilities(canonical),
                               atol=1e-5)


def test_one_pass_gradcam_is_the_same_on_either_engine(torch_predictor, onnx_predictor, canonical):
    batch = model_batch(canonical[:3], torch_predictor.input_size)
    reference = gradcam_all_classes(torch_predictor.model, batch)
    served = cam_pass(onnx_predictor.engine.run(batch), onnx_predictor.classifier_weight)
    assert served.maps.shape == reference.maps.shape
    scale = np.maximum(reference.maps.max(axis=(2, 3), keepdims=True), 1e-12)
    np.testing.assert_allclose(served.maps / scale, reference.maps / scale, atol=1e-3)
    np.testing.assert_allclose(served.pooled, reference.pooled, atol=1e-4)


def test_predictions_and_ood_notes_agree_across_engines(torch_predictor, onnx_predictor):
    blobs = [(p.name, p.read_bytes()) for p in sorted(FIXTURES.glob("*.png"))]
    for name, data in blobs:
        a, b = torch_predictor.predict_bytes(data, name), onnx_predictor.predict_bytes(data, name)
        assert a.label == b.label and a.warnings == b.warnings
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) < 1e-5


def test_the_session_is_shared_safely_between_threads(onnx_predictor, canonical):
    batch = model_batch(canonical[:2], onnx_predictor.input_size)
    expected = onnx_predictor.engine.run(batch).logits
    results, errors = [], []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(onnx_predictor.engine.run(batch).logits)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12
    for logits in results:
        np.testing.assert_array_equal(logits, expected)


def test_export_cache_is_reused_and_an_altered_entry_is_rebuilt(torch_predictor, tmp_path):
    model, sidecar = torch_predictor.model, torch_predictor.sidecar
    first = cached_onnx(model, sidecar, tmp_path)
    [entry] = tmp_path.glob("*.onnx")
    record = json.loads(entry.with_suffix(".json").read_text())
    assert record["key"]["weights_sha256"] == sidecar["weights_sha256"]
    stamp = entry.stat().st_mtime_ns
    assert cached_onnx(model, sidecar, tmp_path) == first and entry.stat().st_mtime_ns == stamp  # read, not rebuilt
    entry.write_bytes(first[:-100] + b"\0" * 100)  # altered on disk
    rebuilt = cached_onnx(model, sidecar, tmp_path)
    assert rebuilt == entry.read_bytes()
    engine = OnnxRuntimeEngine(rebuilt)
    batch = probe_batch(torch_predictor.input_size)
    np.testing.assert_allclose(engine.run(batch).logits, TorchEngine(model).run(batch).logits, atol=1e-4)
    other = {**sidecar, "weights_sha256": "0" * 64}  # other weights never get this export
    cached_onnx(model, other, tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 2


def test_export_has_a_dynamic_batch_and_both_outputs(torch_predictor):
    engine = OnnxRuntimeEngine(export_onnx(torch_predictor.model, torch_predictor.input_size))
    assert [o.name for o in engine.session.get_outputs()] == ["logits", "feature_map"]
    for n in (1, 5):
        result = engine.run(probe_batch(torch_predictor.input_size, n))
        assert result.logits.shape == (n, 3) and result.feature_map.shape[:2] == (n, 1024)


def test_auto_choice_is_measured_and_said(torch_predictor):
    engine, note = build_engine("auto", torch_predictor.model, torch_predictor.sidecar, threads=1)
    assert engine.name in ("onnxruntime", "openvino", "torch")
    assert "the fastest exact engine measured here" in note or (
        engine.name == "onnxruntime" and "of the fastest exact engine at batch 1 here" in note)
    assert all(f"{name} " in note and " ms" in note for name in ("ONNX Runtime", "OpenVINO", "PyTorch"))


@pytest.mark.parametrize(("times", "picked"), [
    ({"onnxruntime": 14.7, "openvino": 13.6, "torch": 58.0}, "onnxruntime"),  # 8% slower: the house runtime
    ({"onnxruntime": 20.0, "openvino": 13.6, "torch": 58.0}, "openvino"),     # 47% slower: the faster one
    ({"onnxruntime": 12.0, "openvino": 13.6, "torch": 58.0}, "onnxruntime"),
    ({"openvino": 13.6, "torch": 12.0}, "torch"),                             # no ONNX Runtime: the fastest
])
def test_auto_keeps_onnx_runtime_unless_another_engine_is_clearly_faster(times, picked):
    assert pick_exact(times) == picked


def test_unknown_engine_is_a_clear_error(torch_predictor):
    with pytest.raises(ValueError, match="choose one of auto, torch, onnxruntime, openvino, openvino-int8"):
        build_engine("tensorrt", torch_predictor.model, torch_predictor.sidecar)


@pytest.mark.skipif(native_bf16(), reason="this CPU runs bf16 natively")
def test_bf16_is_refused_without_native_support(torch_predictor):
    with pytest.raises(ValueError, match="no native bf16"):
        TorchEngine(torch_predictor.model, bf16=True)


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16")
def test_bf16_where_native_keeps_the_labels(torch_predictor, canonical):
    fast = Predictor(WEIGHTS, fast=True)
    assert fast.engine.name == "torch-bf16"
    assert (fast.probabilities(canonical).argmax(1) == torch_predictor.probabilities(canonical).argmax(1)).all()
