"""The DenseNet: torchvision-compatible weights, and a forward Grad-CAM hooks can trust."""

from __future__ import annotations

import torch
from torchvision.models import densenet121

from covidviz.model.network import build_model, load_compatible_state


def test_state_dict_round_trips_with_torchvision():
    ours = build_model(3).eval()
    theirs = densenet121(num_classes=3).eval()
    theirs.load_state_dict(ours.state_dict())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(2, 3, 96, 96)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_features_output_survives_the_forward():
    """torchvision's in-place ReLU overwrites what a hook on `features` stored; ours must not."""
    def captured_after_forward(model):
        kept = {}
        handle = model.features.register_forward_hook(lambda m, i, o: kept.update(out=o, copy=o.detach().clone()))
        model(torch.randn(1, 3, 64, 64))
        handle.remove()
        return kept
    ours = captured_after_forward(build_model(3).eval())
    assert torch.equal(ours["out"], ours["copy"]) and (ours["out"] < 0).any()
    theirs = captured_after_forward(densenet121(num_classes=3).eval())
    assert not torch.equal(theirs["out"], theirs["copy"])  # the bug this model exists to avoid


def test_imagenet_style_checkpoint_initialises_features_only():
    imagenet_like = densenet121(num_classes=1000).state_dict()
    model = build_model(3)
    skipped = load_compatible_state(model, {f"module.{k}": v for k, v in imagenet_like.items()})
    assert skipped == ["classifier.bias", "classifier.weight"]
    assert torch.equal(model.features.conv0.weight, imagenet_like["features.conv0.weight"])
