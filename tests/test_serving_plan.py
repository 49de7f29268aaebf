"""The dashboard's lean predictor: it serves the engines a full predictor chose on this machine (the plan), from
the same verified exports, with the same answers and maps, and without torch; a plan it cannot trust is not used."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from covidviz.explain.reading import heatmap, read_xray
from covidviz.io.loading import load_xray_file
from covidviz.model.openvino_engine import INT8_MODEL, INT8_RECORD, INT8_SUBDIR
from covidviz.model.predictor import Predictor
from covidviz.model.serving_plan import plan_key, plan_path, read_plan, serving_threads
from covidviz.model.weights import verified_sidecar
from tests.conftest import FIXTURES, WEIGHTS


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty cache, and this process's engines on the threads a lean server uses, so that the plans the full
    predictors here record are the ones the lean ones look for."""
    monkeypatch.setenv("COVIDVIZ_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(serving_threads())
    yield tmp_path
    torch.set_num_threads(threads)


def films(n: int = 3) -> list:
    return [load_xray_file(path) for path in sorted(FIXTURES.glob("*.png"))[:n]]


def test_a_lean_predictor_serves_what_the_full_one_chose_with_the_same_answers_and_maps(cache):
    full = Predictor(WEIGHTS, engine="onnxruntime")
    plan = read_plan(plan_key(full.sidecar, "onnxruntime", serving_threads(), WEIGHTS))
    assert plan["classifier"]["engine"] == "onnxruntime" and plan["segmenter"]["engine"] == "onnxruntime"
    lean = Predictor(WEIGHTS, engine="onnxruntime", lean=True)
    assert lean.engine.name == "onnxruntime" and lean.segmenter.engine == "onnxruntime"
    assert lean.engine_note.startswith(full.engine_note) and "remembered" in lean.engine_note
    np.testing.assert_array_equal(lean.classifier_weight, full.classifier_weight)
    for xray in films():
        a, b = read_xray(full, xray, "x", full.guard), read_xray(lean, xray, "x", lean.guard)
        np.testing.assert_array_equal(a.prepared.lungs, b.prepared.lungs)
        np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-6)
        np.testing.assert_allclose(b.raw_maps, a.raw_maps, atol=1e-5)
    # a library heatmap method loads the PyTorch network on first use, verified, and draws the same map
    reading = read_xray(lean, films(1)[0], "x", lean.guard)
    np.testing.assert_allclose(heatmap(reading, lean, "HiResCAM", 1), heatmap(reading, full, "HiResCAM", 1), atol=1e-5)


def test_a_plan_whose_export_was_altered_is_not_served(cache):
    Predictor(WEIGHTS, engine="onnxruntime")
    exports = sorted((cache / "onnx").glob("*.onnx"))
    assert len(exports) == 2  # the classifier's and the segmenter's
    exports[0].write_bytes(exports[0].read_bytes() + b"altered")
    lean = Predictor(WEIGHTS, engine="onnxruntime", lean=True)
    assert "remembered" not in lean.engine_note  # chosen again in this process, with PyTorch, not from the plan
    xray = films(1)[0]
    np.testing.assert_allclose(read_xray(lean, xray, "x", None).probabilities,
                               read_xray(Predictor(WEIGHTS, engine="torch"), xray, "x", None).probabilities, atol=1e-5)


def test_a_plan_that_chose_pytorch_serves_pytorch(cache):
    Predictor(WEIGHTS, engine="torch")
    lean = Predictor(WEIGHTS, engine="torch", lean=True)
    assert lean.engine.name == "torch" and lean.segmenter.engine == "torch"


def test_the_plan_key_changes_with_what_the_choice_depends_on(monkeypatch, tmp_path):
    for name in ("COVIDVIZ_ALLOW_INT8", "COVIDVIZ_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    sidecar = verified_sidecar(WEIGHTS)
    base = plan_path(plan_key(sidecar, "auto", 2, WEIGHTS))
    assert plan_path(plan_key(sidecar, None, 2, WEIGHTS)) == base  # COVIDVIZ_ENGINE unset: auto
    assert plan_path(plan_key(sidecar, "onnxruntime", 2, WEIGHTS)) != base
    assert plan_path(plan_key({**sidecar, "weights_sha256": "other"}, "auto", 2, WEIGHTS)) != base
    # a process that runs its engines on one thread (a batch worker) never hands its plan to a server on two
    assert plan_path(plan_key(sidecar, "auto", 1, WEIGHTS)) != base
    # a graph quantised again after the plan was made (its record names new files) is weighed afresh
    requantised = tmp_path / "weights"
    (requantised / INT8_SUBDIR).mkdir(parents=True)
    shipped_record = WEIGHTS / INT8_SUBDIR / INT8_RECORD
    record = json.loads(shipped_record.read_text()) if shipped_record.is_file() else {"files": {}}
    (requantised / INT8_SUBDIR / INT8_RECORD).write_text(json.dumps({**record, "files": {INT8_MODEL: "new"}}))
    assert plan_path(plan_key(sidecar, "auto", 2, requantised)) != base
    monkeypatch.setenv("COVIDVIZ_ALLOW_INT8", "1")
    assert plan_path(plan_key(sidecar, "auto", 2, WEIGHTS)) != base


def test_a_lean_server_runs_its_engines_on_every_cpu_it_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert serving_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert serving_threads() == 1
