"""The preprocessing contract shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covidviz.io.loading import load_xray
from covidviz.model.preprocessing import CANONICAL_SIZE, canonical_image, model_batch, trim_uniform_borders


def test_canonical_shape_range_and_dtype(xray_png):
    image = canonical_image(load_xray(xray_png, "x.png").pixels)
    assert image.shape == (CANONICAL_SIZE, CANONICAL_SIZE) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0


def test_canonical_is_idempotent_on_training_pngs(xray_png):
    """Training PNGs are already 256 x 256: preprocessing them again changes nothing but the stretch."""
    once = canonical_image(load_xray(xray_png, "x.png").pixels)
    np.testing.assert_allclose(canonical_image(once), once, atol=1e-5)


def test_padding_frames_are_trimmed(xray_gray):
    framed = np.zeros((336, 320), np.float32)  # black padding, as in figures from papers
    framed[40:296, 32:288] = xray_gray / 255.0
    np.testing.assert_array_equal(trim_uniform_borders(framed), xray_gray / np.float32(255.0))
    plain = canonical_image(xray_gray / np.float32(255.0))
    assert np.abs(canonical_image(framed) - plain).mean() < 1e-4  # the frame is no cue at all


def test_upload_at_original_resolution_matches_its_training_copy(xray_gray):
    """A 4x larger upload of the same radiograph gives the model nearly the same input."""
    import cv2
    big = cv2.resize(xray_gray, (1024, 1024), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    small = canonical_image(xray_gray / np.float32(255.0))
    assert np.abs(canonical_image(big) - small).mean() < 0.01


def test_model_batch_is_standardised_three_channel(xray_png):
    image = canonical_image(load_xray(xray_png, "x.png").pixels)
    batch = model_batch([image, image * 0.5], size=224)
    assert batch.shape == (2, 3, 224, 224)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[:, 0], batch[:, 2])
    np.testing.assert_allclose(batch.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-4)  # brightness/contrast of the source is removed


def test_input_size_follows_the_request(xray_png):
    image = canonical_image(load_xray(xray_png, "x.png").pixels)
    assert model_batch([image], size=128).shape[-1] == 128


@pytest.mark.parametrize("size", [128, 224, 256, 384])
def test_the_resize_is_pytorchs_antialiased_bilinear_on_arrays_and_tensors(size):
    """The shipped models were trained through ``F.interpolate(antialias=True)``; serving resizes with a
    weight matrix in numpy (no torch in the server), training with the same matrix on tensors."""
    import torch.nn.functional as F

    from covidviz.model.preprocessing import resize_batch, standardise
    canonical = np.random.default_rng(size).random((3, 1, 256, 256), dtype=np.float32)
    reference = F.interpolate(torch.from_numpy(canonical), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
    resized = resize_batch(canonical, size)
    assert isinstance(resized, np.ndarray) and resized.shape == (3, 1, size, size)
    np.testing.assert_allclose(resized, reference.numpy(), atol=2e-5)
    on_tensor = resize_batch(torch.from_numpy(canonical), size)
    assert isinstance(on_tensor, torch.Tensor)
    np.testing.assert_allclose(on_tensor.numpy(), resized, atol=1e-6)
    np.testing.assert_allclose(standardise(on_tensor).numpy(), standardise(resized), atol=1e-5)
