"""DenseNet-121 whose forward pass has no in-place operation after the feature extractor.

torchvision's ``DenseNet.forward`` applies ``F.relu(..., inplace=True)`` to the output of
``features``. A forward hook on ``features`` then holds a tensor that the ReLU overwrites,
so Grad-CAM pairs post-ReLU activations with pre-ReLU gradients and is silently wrong.
This subclass keeps every parameter name (state dicts load both ways) and only replaces
the forward.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from covidviz._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # before torchvision's first import (CPU torch + CUDA torchvision wheel)
from torchvision.models.densenet import DenseNet  # noqa: E402

ARCHITECTURE = "densenet121"


class CxrDenseNet(DenseNet):
    """torchvision DenseNet-121 (growth 32, blocks 6-12-24-16) with an out-of-place head."""

    def __init__(self, num_classes: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
                         num_classes=num_classes, drop_rate=drop_rate)

    @staticmethod
    def pool(feature_map: Tensor) -> Tensor:
        """What the classifier reads: ReLU, then global average pooling of the ``features`` output."""
        return F.adaptive_avg_pool2d(F.relu(feature_map), (1, 1)).flatten(1)

    def head(self, feature_map: Tensor) -> Tensor:
        """Logits from the ``features`` output."""
        return self.classifier(self.pool(feature_map))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_model(num_classes: int = 3) -> CxrDenseNet:
    """A randomly initialised model (torchvision's initialisation)."""
    return CxrDenseNet(num_classes=num_classes)


def load_compatible_state(model: CxrDenseNet, state: dict[str, Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match; return the names that were skipped.

    Used by ``train --init``: an ImageNet DenseNet-121 state dict (1000-class head, and old
    checkpoints' ``norm.1``-style keys) or an earlier covidviz model both fit.
    """
    state = {_modern_key(k): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("features.") for k in usable):
        raise ValueError("the checkpoint shares no feature-extractor tensors with DenseNet-121")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def _modern_key(key: str) -> str:
    # Checkpoints from torchvision < 0.3 name layers "norm.1" instead of "norm1".
    for old, new in ((".norm.1", ".norm1"), (".norm.2", ".norm2"), (".relu.1", ".relu1"),
                     (".relu.2", ".relu2"), (".conv.1", ".conv1"), (".conv.2", ".conv2")):
        key = key.replace(old, new)
    return key.removeprefix("module.")
