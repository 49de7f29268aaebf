"""Every backbone of the comparison: trains through the real training path, exports, loads verified (and
refuses a mismatch), runs on both engines, and its one-pass Grad-CAM equals pytorch-grad-cam's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from covidviz.errors import WeightsError
from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
from covidviz.explain.cam.library import library_cam
from covidviz.explain.cam.scaling import normalise_like_library
from covidviz.model.engine import OnnxRuntimeEngine, TorchEngine, export_onnx, probe_batch
from covidviz.model.network import ARCHITECTURES, build_model, parameter_count
from covidviz.model.sidecar import ARCHITECTURE_NAMES
from covidviz.model.weights import load_weights
from covidviz.training.config import TrainConfig
from covidviz.training.train import train
from covidviz.verified import SIDECAR_FILE
from tests.toy_data import make_toy_collection

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_collection(tmp_path_factory.mktemp("cxr"))


@pytest.fixture(scope="module", params=ARCHITECTURE_NAMES)
def trained(request, toy, tmp_path_factory):
    """Two optimiser steps of the real training loop (one epoch of 16 images, batch 8), then export."""
    run = tmp_path_factory.mktemp(request.param)
    cfg = TrainConfig(data_dir=str(toy), run_dir=str(run / "run"), export_dir=str(run / "export"), size=SIZE,
                      epochs=1, batch_size=8, epoch_images=16, fast=False, arch=request.param, recipe="test recipe")
    best = train(cfg)
    return request.param, run / "export", torch.load(best, weights_only=True)


def test_registry_matches_the_names_light_callers_use():
    assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES
    assert parameter_count(build_model(3, "small_cnn")) < 2_000_000
    with pytest.raises(ValueError, match="unknown architecture 'alexnet'"):
        build_model(3, "alexnet")


def test_trains_exports_and_loads_verified(trained):
    arch, export, checkpoint = trained
    model, sidecar = load_weights(export, expect=arch)
    assert sidecar["architecture"] == arch and sidecar["recipe"] == "test recipe"
    assert sidecar["name"] == f"covidviz {ARCHITECTURES[arch].title}"
    assert sidecar["training"]["stages"][0]["arch"] == arch
    reference = build_model(3, arch)
    reference.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                               for k, v in checkpoint["model"].items()})  # the export is fp16
    x = torch.from_numpy(probe_batch(SIZE))
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), reference.eval()(x).numpy(), atol=1e-5)


def test_loading_refuses_another_architecture(trained):
    arch, export, _ = trained
    # an architecture with other tensors (DenseNet-121 and its stride-16 form share all of theirs: only the
    # sidecar's name tells them apart, so a tampered name cannot be caught by the tensors' shapes)
    other = "small_cnn" if arch != "small_cnn" else "resnet50"
    with pytest.raises(WeightsError, match=f"describes {arch}; {other} was expected"):
        load_weights(export, expect=other)
    sidecar = json.loads((export / SIDECAR_FILE).read_text())
    try:  # the weights' hash still verifies, but the tensors belong to another network
        (export / SIDECAR_FILE).write_text(json.dumps({**sidecar, "architecture": other}))
        with pytest.raises(WeightsError, match="do not fit"):
            load_weights(export)
        (export / SIDECAR_FILE).write_text(json.dumps({**sidecar, "architecture": "alexnet"}))
        with pytest.raises(WeightsError, match="knows densenet121"):
            load_weights(export)
    finally:
        (export / SIDECAR_FILE).write_text(json.dumps(sidecar))


def test_onnx_export_agrees_with_pytorch(trained):
    arch, export, _ = trained
    model, _ = load_weights(export)
    onnx = OnnxRuntimeEngine(export_onnx(model, SIZE), threads=1)
    batch = probe_batch(SIZE, 3)
    expected, got = TorchEngine(model).run(batch), onnx.run(batch)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-3)
    np.testing.assert_allclose(got.feature_map, expected.feature_map, atol=1e-3)
    assert got.feature_map.shape[1] == model.classifier.in_features


def test_one_pass_gradcam_equals_pytorch_grad_cam(trained):
    arch, export, _ = trained
    model, _ = load_weights(export)
    batch = torch.from_numpy(probe_batch(SIZE, 1))
    fast = normalise_like_library(gradcam_all_classes(model, batch).maps[0], SIZE)
    for k in range(3):
        reference = library_cam(model, "Grad-CAM", batch, k)
        assert np.abs(fast[k] - reference).max() < 1e-4, (arch, k)


def test_resuming_a_run_with_another_architecture_is_refused(trained, toy):
    arch, export, _ = trained
    other = "small_cnn" if arch != "small_cnn" else "resnet50"
    cfg = TrainConfig(data_dir=str(toy), run_dir=str(export.parent / "run"), size=SIZE, epochs=2, batch_size=8,
                      epoch_images=16, fast=False, arch=other)
    with pytest.raises(ValueError, match=f"trains {arch}; resume it with --arch {arch}"):
        train(cfg, resume=True)


def test_the_low_pass_front_end_blurs_without_weights_of_its_own():
    from covidviz.model.network import GaussianLowPass
    blur = GaussianLowPass(1.0)
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(blur(flat), flat, atol=1e-6)  # a flat film stays flat, edges included (reflect)
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert blur(noise).shape == noise.shape and blur(noise).std() < 0.4 * noise.std()
    low_pass, plain = build_model(3, "densenet121_os16_lp"), build_model(3, "densenet121_os16")
    assert low_pass.state_dict().keys() == plain.state_dict().keys()
    with pytest.raises(ValueError, match="sigma must be positive"):
        GaussianLowPass(0.0)


def test_the_stride_8_network_draws_16_by_16_at_128_px_with_densenet_weights():
    # issue 20: a 16 x 16 map without the 256 px input whose grain the 256 px models read as disease
    stride8, plain = build_model(3, "densenet121_os8").eval(), build_model(3, "densenet121").eval()
    assert stride8.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert stride8.features(torch.zeros(1, 3, 128, 128)).shape[-2:] == (16, 16)
        assert plain.features(torch.zeros(1, 3, 128, 128)).shape[-2:] == (4, 4)
