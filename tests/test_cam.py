"""Heatmaps: the fast path equals pytorch-grad-cam's Grad-CAM, every library method runs, scaling is explicit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covidviz import CLASSES
from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
from covidviz.explain.cam.library import library_cam
from covidviz.explain.cam.methods import METHODS, SLOW_METHODS
from covidviz.explain.cam.scaling import normalise_like_library, normalise_shared, to_original
from covidviz.io.loading import load_xray
from covidviz.model.preprocessing import canonical_image, canonical_with_box, model_batch
from tests.conftest import FIXTURES, fixture_rows


@pytest.fixture(scope="module")
def batches(predictor):
    return {row["fixture"]: torch.from_numpy(model_batch(
        [canonical_image(load_xray((FIXTURES / row["fixture"]).read_bytes()).pixels)], predictor.input_size))
        for row in fixture_rows()}


def test_fast_gradcam_equals_pytorch_grad_cam_for_every_class(predictor, batches):
    for name, batch in batches.items():
        fast = normalise_like_library(gradcam_all_classes(predictor.model, batch).maps[0], predictor.input_size)
        for k in range(len(CLASSES)):
            reference = library_cam(predictor.model, "Grad-CAM", batch, k)
            assert np.abs(fast[k] - reference).max() < 1e-4, (name, CLASSES[k])


def test_fast_path_logits_equal_the_model(predictor, batches):
    import torch
    batch = next(iter(batches.values()))
    with torch.inference_mode():
        expected = predictor.model(batch).numpy()
    np.testing.assert_allclose(gradcam_all_classes(predictor.model, batch).logits, expected, atol=1e-4)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in SLOW_METHODS])
def test_library_methods_give_unit_range_maps(predictor, batches, method):
    batch = next(iter(batches.values()))
    cam = library_cam(predictor.model, method, batch, 0)
    assert cam.shape == (predictor.input_size, predictor.input_size)
    assert np.isfinite(cam).all() and 0 <= cam.min() and cam.max() <= 1 + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(SLOW_METHODS))
def test_slow_methods_run_and_score_cam_reports_progress(predictor, method):
    # a small input keeps the real model's hundreds of masked passes short
    batch = model_batch([canonical_image(load_xray((FIXTURES / fixture_rows()[0]["fixture"]).read_bytes()).pixels)], 96)
    seen: list[tuple[int, int]] = []
    cam = library_cam(predictor.model, method, batch, 1, progress=lambda done, total: seen.append((done, total)))
    assert cam.shape == (96, 96) and np.isfinite(cam).all()
    if method == "Score-CAM":
        assert seen[-1][0] == seen[-1][1] == predictor.model.classifier.in_features
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_score_cam_progress_keeps_the_library_maths():
    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class Tiny(torch.nn.Module):  # 40 channels: two of Score-CAM's batches of 32
        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 40, 3, padding=1), torch.nn.ReLU())
            self.classifier = torch.nn.Linear(40, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model, batch = Tiny().eval(), torch.rand(1, 1, 16, 16)
    seen: list[tuple[int, int]] = []
    ours = library_cam(model, "Score-CAM", batch, 1, progress=lambda done, total: seen.append((done, total)))
    with ScoreCAM(model=model, target_layers=[model.features]) as cam:
        reference = cam(input_tensor=batch, targets=[ClassifierOutputTarget(1)])[0]
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert seen == [(32, 40), (40, 40)]


def test_shared_scale_keeps_relative_strength():
    raw = np.zeros((3, 7, 7), np.float32)
    raw[0, 2:5, 2:5], raw[1, 2:5, 2:5] = 10.0, 1.0
    shared = normalise_shared(raw, 56)
    per_map = normalise_like_library(raw, 56)
    assert shared[0].max() == pytest.approx(1.0) and shared[1].max() == pytest.approx(0.1, abs=0.01)
    assert per_map[1].max() == pytest.approx(1.0)  # what the library would show for the weak class
    assert shared[2].max() == 0


def test_map_lands_on_the_region_the_model_saw():
    tall = np.random.default_rng(0).random((400, 256)).astype(np.float32)  # no flat border to trim
    _, box = canonical_with_box(tall)
    assert box.left == 0 and box.height == box.width == 256 and box.top == pytest.approx(72, abs=1)
    cam = np.zeros((224, 224), np.float32)
    cam[:112] = 1.0  # the top half of what the model saw
    placed = to_original(cam, box, tall.shape)
    assert np.isnan(placed[:70]).all() and np.isnan(placed[330:]).all()
    assert np.nanmean(placed[80:190]) > 0.95 and np.nanmean(placed[210:320]) < 0.05


def test_map_fills_a_rectangular_lung_field_box():
    from covidviz.model.preprocessing import CropBox
    box = CropBox(top=50.0, left=20.0, height=200.0, width=100.0)  # a tall field, squeezed into a square
    cam = np.zeros((64, 64), np.float32)
    cam[:, 32:] = 1.0  # the right half of what the model saw
    placed = to_original(cam, box, (300, 300))
    assert np.isnan(placed[:50]).all() and np.isnan(placed[250:]).all() and np.isnan(placed[:, 121:]).all()
    assert np.nanmean(placed[60:240, 22:68]) < 0.05 and np.nanmean(placed[60:240, 72:118]) > 0.95


def test_score_cam_estimate_follows_the_model_and_scales_an_untimed_one_by_its_pixels():
    from covidviz.explain.cam.methods import time_estimate
    assert time_estimate("Score-CAM") == "about 25 s per map on 2 CPU cores"
    assert time_estimate("Score-CAM", "densenet121", 128) == time_estimate("Score-CAM")
    assert time_estimate("Score-CAM", "densenet121_os16", 256) == "about 110 s per map on 2 CPU cores"
    scaled = time_estimate("Score-CAM", "densenet121", 256)
    assert scaled.startswith("roughly 100 s per map") and "scaled from densenet121 at 128 px" in scaled


class _BeforeTheReLU(torch.nn.Module):
    """Like the project's networks: ``features`` ends before the classifier's ReLU. ``negative_gain`` rescales
    only what the ReLU discards, so the logits and the gradients the classifier passes back do not change."""

    def __init__(self, negative_gain: float) -> None:
        super().__init__()
        with torch.random.fork_rng():  # the same weights every time, without reseeding the other tests
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.classifier = torch.nn.Linear(8, 3)
        self.negative_gain = negative_gain
        self.features = torch.nn.Identity()  # the target layer, its output the rescaled map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        a = self.features(torch.where(a > 0, a, self.negative_gain * a))
        return self.classifier(torch.relu(a).mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["Grad-CAM++", "XGrad-CAM", "HiResCAM", "LayerCAM"])
def test_a_map_explains_what_the_classifier_reads_not_what_its_relu_discards(method):
    batch = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    maps = [library_cam(_BeforeTheReLU(gain), method, batch, 1) for gain in (1.0, 5.0)]
    assert np.ptp(maps[0]) > 0.5
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)


def test_gradcam_plus_plus_weights_follow_the_paper_at_small_gradients():
    from covidviz.explain.cam.library import cam_class

    rng = np.random.default_rng(0)
    activations = rng.random((1, 6, 16, 16))  # rectified, as the class receives them
    grads = rng.normal(0, 1e-4, (1, 6, 16, 16))  # the size behind global average pooling over 16 x 16 cells
    g = np.maximum(grads, 0)
    total = activations.sum(axis=(2, 3), keepdims=True)
    paper = (g * np.where(g > 0, g**2 / np.where(g > 0, 2 * g**2 + total * g**3, 1), 0)).sum(axis=(2, 3))
    model = _BeforeTheReLU(1.0)
    with cam_class("Grad-CAM++")(model=model, target_layers=[model.features]) as cam:
        ours = cam.get_cam_weights(None, None, None, activations, grads)
    np.testing.assert_allclose(ours, paper, rtol=1e-9)
