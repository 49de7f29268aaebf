"""The outside-the-lungs training penalty: what it measures, and that training with it moves the page's own
Grad-CAM into the lungs where a cue outside them predicts the class just as well."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from covidviz.explain.cam.fast_gradcam import gradcam_all_classes, gradcam_weights
from covidviz.lungs.field import lung_energy
from covidviz.model.network import GapClassifier
from covidviz.training.augment import augment, augment_with_masks, random_theta, warp
from covidviz.training.lung_attention import gradcam_energy, outside_lung_share

SIZE = 32


def _masks(inside: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(inside, dtype=torch.float32)[:, None]


def test_the_share_is_zero_inside_one_outside_and_skips_films_without_lungs():
    lungs = np.zeros((3, SIZE, SIZE))
    lungs[:, :, :16] = 1.0
    lungs[2] = 0.0  # no lungs found: this film must not count
    energy = torch.zeros(3, 4, 4)
    energy[0, :, :2] = 1.0  # all inside
    energy[1, :, 2:] = 1.0  # all outside
    energy[2] = 5.0
    assert float(outside_lung_share(energy[:1], _masks(lungs[:1]))) == pytest.approx(0.0)
    assert float(outside_lung_share(energy[1:2], _masks(lungs[1:2]))) == pytest.approx(1.0)
    assert float(outside_lung_share(energy, _masks(lungs))) == pytest.approx(0.5)
    assert float(outside_lung_share(energy[2:], _masks(lungs[2:]))) == 0.0
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        outside_lung_share(energy, torch.ones(3, SIZE, SIZE))


def test_the_energy_is_the_pages_gradcam_before_its_relu():
    model = _TinyNet()
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    feature_map = model.features(x).detach()
    weight = model.classifier.weight.detach()
    alpha = gradcam_weights(weight.numpy(), feature_map.numpy()) * feature_map.shape[2] * feature_map.shape[3]
    expected = np.abs(np.einsum("nkc,nchw->nkhw", alpha, feature_map.numpy())).sum(1)
    np.testing.assert_allclose(gradcam_energy(feature_map, weight).numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="N x K x h x w"):
        gradcam_energy(feature_map[0], weight)


def test_masks_move_with_their_images_and_the_draws_are_augments():
    images = torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    masks = (images > 0.5).float()
    plain = augment(images, torch.Generator().manual_seed(7))
    moved, moved_masks = augment_with_masks(images, masks, torch.Generator().manual_seed(7))
    torch.testing.assert_close(moved, plain)
    # the same geometry as the images, and nothing else (no photometric change, no cut-out)
    torch.testing.assert_close(moved_masks, warp(masks, random_theta(4, torch.Generator().manual_seed(7))))
    assert not torch.equal(moved_masks, masks)


class _TinyNet(GapClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 16, 3, padding=1)))
        self.classifier = nn.Linear(16, 2)


def _films(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A dark "lung" on the left on a brighter body, as on a radiograph (the lungs are what a model can tell by
    their look). Class 1 carries a bright blob inside the lung and the same blob outside it, on the right; class
    0 carries neither. Either blob alone tells the class."""
    lungs = np.zeros((n, SIZE, SIZE), dtype=bool)
    lungs[:, 2:30, 2:15] = True
    images = torch.where(torch.as_tensor(lungs)[:, None], 0.15, 0.6) + torch.rand(n, 1, SIZE, SIZE, generator=gen) * 0.1
    y = torch.arange(n) % 2
    for i in torch.nonzero(y).flatten().tolist():
        for left in (int(torch.randint(4, 9, (1,), generator=gen)), int(torch.randint(19, 25, (1,), generator=gen))):
            top = int(torch.randint(4, 24, (1,), generator=gen))
            images[i, 0, top:top + 4, left:left + 4] = 1.0
    return images, y, lungs


def _train(weight: float) -> float:
    torch.manual_seed(0)
    model = _TinyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(400):
        x, y, lungs = _films(32, gen)
        feature_map = model.features(x)
        loss = F.cross_entropy(model.head(feature_map), y)
        if weight:
            loss = loss + weight * outside_lung_share(gradcam_energy(feature_map, model.classifier.weight),
                                                      _masks(lungs))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x, y, lungs = _films(64, torch.Generator().manual_seed(99))
    result = gradcam_all_classes(model.eval(), x)
    assert (result.logits.argmax(1) == y.numpy()).mean() > 0.9  # both learn the task
    return float(np.nanmedian([lung_energy(result.maps[i, 1], lungs[i]) for i in np.nonzero(y.numpy())[0]]))


def test_training_with_the_penalty_moves_the_pages_gradcam_into_the_lungs():
    # measured here: the class's median lung energy 0.35 without the penalty, 0.75 with it (the lung is 36% of
    # the film); at weight 1 the penalty wins over learning the task at all
    without, with_penalty = _train(0.0), _train(0.3)
    assert with_penalty > 0.6
    assert with_penalty > without + 0.2
