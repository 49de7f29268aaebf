"""The lung segmenter's network and its input: one definition for training and inference."""

from __future__ import annotations

import cv2
import numpy as np
import torch

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


def standardise(batch: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean and unit variance of an N x 1 x H x W batch."""
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return ((batch - mean) / batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)).contiguous(
        memory_format=torch.channels_last)


def segmenter_input(grays: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Grayscale images to the segmenter's N x 1 x 256 x 256 input tensor."""
    return standardise(torch.from_numpy(np.stack([segmenter_square(g) for g in grays])[:, None]))
