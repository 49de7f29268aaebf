"""The lung segmenter's network and its input: one definition for training and inference."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

Batch = TypeVar("Batch", np.ndarray, "torch.Tensor")

ARCHITECTURE = "unet-resnet18-depth4"
INPUT_SIZE = 256
_PERCENTILES = (0.5, 99.5)


def build_segmenter() -> torch.nn.Module:
    """U-Net with a ResNet-18 encoder cut after its fourth stage (random initialisation: no hub is
    reachable). Four stages keep it small and fast on a CPU (its sidecar and ``bench`` give the time
    measured here); the lungs need no deeper context."""
    from covidviz._torchvision_compat import ensure_torchvision_importable
    ensure_torchvision_importable()  # smp imports timm, which imports torchvision
    import segmentation_models_pytorch as smp
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(64, 32, 16, 8),
                     in_channels=1, classes=1)
    del model.encoder.layer4  # built by smp but never run at depth 4: 8.4 M of the 11.5 M parameters
    return model


def segmenter_square(gray: np.ndarray) -> np.ndarray:
    """Any 2-D grayscale image in [0, 1] to a 256 x 256 float32 square in [0, 1].

    The whole image is resized (aspect ratio not kept, so no lung is ever cropped away) and stretched
    between its 0.5th and 99.5th percentiles. Training augments this square before :func:`standardise`."""
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    h, w = gray.shape
    interp = cv2.INTER_AREA if min(h, w) > INPUT_SIZE else cv2.INTER_LINEAR
    square = cv2.resize(gray.astype(np.float32, copy=False), (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
    lo, hi = np.percentile(square, _PERCENTILES)
    return np.clip((square - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def zscore(batch: Batch) -> Batch:
    """Per-image zero mean and unit variance (sample standard deviation, at least 1e-3) of an N x C x H x W
    batch: a numpy array, or a torch tensor (training), each computed in its own library. Both the
    segmenter's and the classifier's input are standardised by it."""
    if isinstance(batch, np.ndarray):
        batch = batch.astype(np.float32, copy=False)
        mean = batch.mean(axis=(1, 2, 3), keepdims=True)
        return (batch - mean) / np.maximum(batch.std(axis=(1, 2, 3), ddof=1, keepdims=True), np.float32(1e-3))
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return (batch - mean) / batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)


def standardise(batch: Batch) -> Batch:
    """The segmenter's standardisation (:func:`zscore`), channels-last for a tensor."""
    batch = zscore(batch)
    if isinstance(batch, np.ndarray):
        return np.ascontiguousarray(batch)
    import torch
    return batch.contiguous(memory_format=torch.channels_last)


def segmenter_input(grays: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Grayscale images to the segmenter's N x 1 x 256 x 256 float32 input."""
    return standardise(np.stack([segmenter_square(g) for g in grays])[:, None])
