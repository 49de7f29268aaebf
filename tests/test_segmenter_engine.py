"""The lung segmenter on ONNX Runtime: the same masks as PyTorch on real films, the engine named and chosen
by the classifier's policy, and a wrong export refused."""

from __future__ import annotations

import numpy as np
import pytest

from covidviz.io.loading import load_xray_file
from covidviz.lungs.network import build_segmenter, segmenter_input
from covidviz.lungs.segmenter import LungSegmenter, load_segmenter
from covidviz.model import segmenter_engine
from covidviz.model.predictor import Predictor
from covidviz.model.segmenter_engine import PROBABILITY_ATOL, export_segmenter, serve_segmenter
from tests.conftest import FIXTURES, WEIGHTS, fixture_rows

pytestmark = pytest.mark.skipif(not (WEIGHTS / "lungs" / "model.json").is_file(), reason="no shipped segmenter")


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return load_segmenter(WEIGHTS)


@pytest.fixture(scope="module")
def films() -> list[np.ndarray]:
    return [load_xray_file(FIXTURES / r["fixture"]).pixels for r in fixture_rows() if r.get("kind", "chest") == "chest"]


def test_onnx_runtime_draws_pytorchs_lung_masks_on_real_films(segmenter, films):
    served, note = serve_segmenter(segmenter, "onnxruntime")
    assert served.engine == "onnxruntime" and segmenter.engine == "torch" and "ONNX Runtime fp32" in note
    assert served.sha256 == segmenter.sha256  # the same verified weights, on another engine
    ours, theirs = served.probabilities(films), segmenter.probabilities(films)
    assert np.abs(ours - theirs).max() < PROBABILITY_ATOL
    np.testing.assert_array_equal(served.masks(films), segmenter.masks(films))


def test_the_predictor_serves_the_segmenter_by_the_classifiers_choice():
    assert Predictor(WEIGHTS, engine="torch").segmenter.engine == "torch"
    onnx = Predictor(WEIGHTS, engine="onnxruntime")
    assert onnx.segmenter.engine == "onnxruntime" and "lung segmenter on ONNX Runtime" in onnx.segmenter_note
    auto = Predictor(WEIGHTS, engine="auto")  # measured: whichever was faster here, and the note says both times
    assert auto.segmenter.engine in {"torch", "onnxruntime"}
    assert "ONNX Runtime" in auto.segmenter_note and "PyTorch" in auto.segmenter_note and " ms" in auto.segmenter_note


def test_an_export_of_other_weights_is_refused_and_pytorch_serves(segmenter, monkeypatch):
    import torch
    torch.manual_seed(0)
    stranger = LungSegmenter(build_segmenter(), {"weights_sha256": "not-the-shipped-segmenter"})
    monkeypatch.setattr(segmenter_engine, "_served", {})  # this test's verdict stays out of the process cache
    monkeypatch.setattr(segmenter_engine, "segmenter_onnx", lambda _: export_segmenter(stranger))
    served, note = serve_segmenter(segmenter, "onnxruntime")
    assert served is segmenter and served.engine == "torch"
    assert "ONNX Runtime disagreed" in note


def test_the_export_takes_any_batch(segmenter, films):
    served, _ = serve_segmenter(segmenter, "onnxruntime")
    batch = segmenter_input(films[:3])
    assert served.probabilities(films[:3]).shape == (3, 256, 256) == segmenter.torch_probabilities(batch).shape
