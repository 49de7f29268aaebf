"""The classifier networks: every architecture is a feature extractor, then ReLU, global average pooling and
one linear layer, with no in-place operation after the feature extractor.

torchvision's ``DenseNet.forward`` applies ``F.relu(..., inplace=True)`` to the output of ``features``. A
forward hook on ``features`` then holds a tensor that the ReLU overwrites, so Grad-CAM pairs post-ReLU
activations with pre-ReLU gradients and is silently wrong. Here every architecture ends ``features`` at a
normalisation layer and applies the ReLU out of place in :meth:`GapClassifier.pool`, so the same three parts
(``features``, ``pool``, ``classifier``) serve training, both engines, the one-pass Grad-CAM of all classes,
the library CAM methods (target layer ``features``) and the out-of-distribution guard, whatever the backbone.

DenseNets keep torchvision's parameter names, so their state dicts load both ways.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from covidviz._torchvision_compat import ensure_torchvision_importable
from covidviz.model.sidecar import ARCHITECTURE_NAMES

ensure_torchvision_importable()  # before torchvision's first import (CPU torch + CUDA torchvision wheel)
from torchvision.models.densenet import DenseNet  # noqa: E402

ARCHITECTURE = "densenet121"  # the shipped model's


class GapClassifier(nn.Module):
    """The head every architecture shares: ReLU, global average pooling, one linear layer."""

    architecture: str
    features: nn.Module
    classifier: nn.Linear

    @staticmethod
    def pool(feature_map: Tensor) -> Tensor:
        """What the classifier reads: ReLU, then global average pooling of the ``features`` output."""
        return F.adaptive_avg_pool2d(F.relu(feature_map), (1, 1)).flatten(1)

    def head(self, feature_map: Tensor) -> Tensor:
        """Logits from the ``features`` output."""
        return self.classifier(self.pool(feature_map))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class CxrDenseNet(DenseNet, GapClassifier):
    """torchvision DenseNet (growth 32; blocks 6-12-24-16 for DenseNet-121, 6-12-48-32 for DenseNet-201);
    ``features`` ends at ``norm5``."""

    forward = GapClassifier.forward  # not DenseNet's, whose ReLU is in place

    def __init__(self, num_classes: int = 3, drop_rate: float = 0.0,
                 block_config: tuple[int, int, int, int] = (6, 12, 24, 16)) -> None:
        super().__init__(growth_rate=32, block_config=block_config, num_init_features=64,
                         num_classes=num_classes, drop_rate=drop_rate)
        self.architecture = {(6, 12, 24, 16): "densenet121", (6, 12, 48, 32): "densenet201"}.get(
            tuple(block_config), "densenet")


def densenet121_stride16(num_classes: int = 3) -> CxrDenseNet:
    """DenseNet-121 whose last transition keeps its input's resolution (its 2 x 2 average pooling dropped), so
    the last dense block and the map every CAM reads are at stride 16: 16 x 16 cells at 256 px, where
    DenseNet-121 has 8 x 8, and the one-pass Grad-CAM stays exact on every engine (the map is still what the
    head pools). It has DenseNet-121's parameters, names and shapes, so DenseNet-121 weights initialise it."""
    net = CxrDenseNet(num_classes)
    net.features.transition3.pool = nn.Identity()
    net.architecture = "densenet121_os16"
    return net


def densenet121_stride8(num_classes: int = 3) -> CxrDenseNet:
    """DenseNet-121 whose last two transitions keep their input's resolution, so the last two dense blocks and
    the map every CAM reads are at stride 8: 16 x 16 cells at 128 px. The 16 x 16 map of
    :func:`densenet121_stride16` without its 256 px input, whose film grain the 256 px models read as disease
    (issue 20: grain flips a 256 px model's class about three times as often as the 128 px model's); the 128 px
    input is shrunk from the lung field with antialiasing, which averages the grain away. DenseNet-121's
    parameters, names and shapes, so DenseNet-121 weights initialise it."""
    net = CxrDenseNet(num_classes)
    net.features.transition2.pool = nn.Identity()
    net.features.transition3.pool = nn.Identity()
    net.architecture = "densenet121_os8"
    return net


LOW_PASS_SIGMA = 1.0  # canonical (256 px) pixels: about the blur of the 2x antialiased shrink to 128 px


class GaussianLowPass(nn.Module):
    """A fixed Gaussian blur of each input channel, reflect-padded so the size is kept: the low-pass front end.

    At 128 px the shrink from the 256 px lung field averages film grain and detector noise away; at 256 px a
    network sees them: on validation its class flips under grain about three times as often as the 128 px
    model's (``weights/eval/ablation.json``). The kernel is a non-persistent buffer, not a weight: it is the same in
    training, in every engine's graph and after quantisation, and the state dict stays the backbone's."""

    def __init__(self, sigma: float = LOW_PASS_SIGMA, channels: int = 3) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"the low-pass sigma must be positive, not {sigma}")
        self.radius, self.channels = max(1, round(3 * sigma)), channels
        x = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
        g = torch.exp(-x ** 2 / (2 * sigma ** 2))
        g = g / g.sum()
        kernel = (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        padded = F.pad(x, (self.radius,) * 4, mode="reflect")
        return F.conv2d(padded, self.kernel, groups=self.channels)


def densenet121_stride16_low_pass(num_classes: int = 3) -> CxrDenseNet:
    """:func:`densenet121_stride16` reading its input through :class:`GaussianLowPass` (``features.lowpass``):
    the 16 x 16 map of the stride-16 network at 256 px, with the grain a 128 px model never sees blurred away.
    Its state dict is the stride-16 network's, so either initialises the other."""
    net = densenet121_stride16(num_classes)
    net.features = nn.Sequential(OrderedDict([("lowpass", GaussianLowPass()), *net.features.named_children()]))
    net.architecture = "densenet121_os16_lp"
    return net


class CxrResNet50(GapClassifier):
    """torchvision ResNet-50 (zero-initialised last BN of each residual branch, which helps training from
    scratch); ``features`` is the stem and the four stages, ending at the last block's ReLU."""

    architecture = "resnet50"

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        from torchvision.models.resnet import resnet50
        net = resnet50(zero_init_residual=True)
        self.features = nn.Sequential(OrderedDict(
            (name, getattr(net, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                    "layer4")))
        self.classifier = nn.Linear(2048, num_classes)


class CxrVgg19Bn(GapClassifier):
    """torchvision VGG-19 with batch norm, its 120 M-parameter fully connected head replaced by global average
    pooling and one linear layer, so it trains here; ``features`` stops at the batch norm of the last
    convolution (its final ReLU and max-pool dropped), so Grad-CAM reads the last convolution at stride 16."""

    architecture = "vgg19_bn"

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        from torchvision.models.vgg import vgg19_bn
        self.features = vgg19_bn().features[:-2]
        self.classifier = nn.Linear(512, num_classes)


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]


class SmallCxrNet(GapClassifier):
    """A small CNN designed here (1.8 M parameters): five stages of 3 x 3 convolutions with batch norm (32, 64,
    128, 256, 256 channels, two convolutions in the first four), max-pooling between stages, so its last map is
    at stride 16 like VGG's, at a twentieth of VGG-19's parameters."""

    architecture = "small_cnn"

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for stage, width in enumerate((32, 64, 128, 256)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            layers += [*_conv_bn(c_in, width), nn.ReLU(), *_conv_bn(width, width), nn.ReLU()]
            c_in = width
        layers += [nn.MaxPool2d(2), *_conv_bn(c_in, 256)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(256, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    build: Callable[[int], GapClassifier]


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("densenet121", "DenseNet-121", lambda k: CxrDenseNet(k)),
    Architecture("densenet201", "DenseNet-201", lambda k: CxrDenseNet(k, block_config=(6, 12, 48, 32))),
    Architecture("densenet121_os16", "DenseNet-121 at output stride 16", densenet121_stride16),
    Architecture("densenet121_os16_lp", "DenseNet-121 at output stride 16, low-pass front end",
                 densenet121_stride16_low_pass),
    Architecture("densenet121_os8", "DenseNet-121 at output stride 8", densenet121_stride8),
    Architecture("resnet50", "ResNet-50", CxrResNet50),
    Architecture("vgg19_bn", "VGG-19 (batch norm, average-pool head)", CxrVgg19Bn),
    Architecture("small_cnn", "small CNN", SmallCxrNet),
)}
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES


def architecture(name: str) -> Architecture:
    """The registered architecture ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def build_model(num_classes: int = 3, arch: str = ARCHITECTURE) -> GapClassifier:
    """A randomly initialised model of architecture ``arch`` (torchvision's initialisation)."""
    return architecture(arch).build(num_classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_compatible_state(model: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match; return the names that were skipped.

    Used by ``train --init``: an ImageNet DenseNet-121 state dict (1000-class head, and old
    checkpoints' ``norm.1``-style keys) or an earlier covidviz model of the same architecture both fit.
    """
    state = {_modern_key(k): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("features.") for k in usable):
        raise ValueError(f"the checkpoint shares no feature-extractor tensors with "
                         f"{getattr(model, 'architecture', type(model).__name__)}")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def _modern_key(key: str) -> str:
    # Checkpoints from torchvision < 0.3 name layers "norm.1" instead of "norm1".
    for old, new in ((".norm.1", ".norm1"), (".norm.2", ".norm2"), (".relu.1", ".relu1"),
                     (".relu.2", ".relu2"), (".conv.1", ".conv1"), (".conv.2", ".conv2")):
        key = key.replace(old, new)
    return key.removeprefix("module.")
