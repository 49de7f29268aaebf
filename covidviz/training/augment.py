"""Batched radiograph augmentation on tensors (training only).

Geometric: small rotations, zoom, shifts and independent horizontal/vertical stretch, as patient
positioning and uploaders' resizing vary; no flips, since
laterality (heart on the left) is anatomy. Photometric: gamma, contrast, brightness, noise
and blur, as exposure and detectors vary. Cut-out boxes teach the model not to depend on any
one region such as a burnt-in marker or label. Acquisition (:func:`random_acquisition`, optional): the
imitations of how a film was made from :mod:`covidviz.data.acquisition` (grain, vendor curves, edge
enhancement, low resolution and JPEG, collimation and text, digitised film), so that the answer stops
depending on them (issue 20, part 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from covidviz.data.acquisition import TRANSFORMS


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def random_theta(n: int, gen: torch.Generator, max_degrees: float = 10.0, scale: tuple[float, float] = (0.85, 1.2),
                 aspect: tuple[float, float] = (0.85, 1.18), max_shift: float = 0.06) -> torch.Tensor:
    """N x 2 x 3 affine matrices: rotation, zoom, shift, and an independent horizontal/vertical stretch
    (some sources squashed their films to a square; the model must not learn that geometry as a cue)."""
    angle = _uniform(n, -max_degrees, max_degrees, gen) * math.pi / 180
    zoom = _uniform(n, *scale, gen)
    stretch = _uniform(n, math.log(aspect[0]), math.log(aspect[1]), gen).exp()
    sx, sy = 1 / (zoom * stretch.sqrt()), stretch.sqrt() / zoom
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos * sx, -sin * sy, sin * sx, cos * sy
    theta[:, :, 2] = _uniform(2 * n, -2 * max_shift, 2 * max_shift, gen).view(n, 2)
    return theta


def warp(batch: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Apply :func:`random_theta` matrices (the same ones to an image batch and its masks)."""
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode=mode, padding_mode="zeros", align_corners=False)


def random_affine(batch: torch.Tensor, gen: torch.Generator, **ranges: object) -> torch.Tensor:
    return warp(batch, random_theta(batch.shape[0], gen, **ranges))


def random_photometric(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = batch.shape[0]
    shape = (n, 1, 1, 1)
    out = batch.clamp(0, 1) ** _uniform(n, 0.7, 1.5, gen).view(shape)
    out = (out - 0.5) * _uniform(n, 0.8, 1.25, gen).view(shape) + 0.5 + _uniform(n, -0.1, 0.1, gen).view(shape)
    blur = (torch.rand(n, generator=gen) < 0.2).view(shape)
    out = torch.where(blur, F.avg_pool2d(out, 3, stride=1, padding=1, count_include_pad=False), out)
    noise_sigma = _uniform(n, 0.0, 0.03, gen).view(shape)
    return out + torch.randn(out.shape, generator=gen) * noise_sigma


def random_cutout(batch: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    n, _, h, w = batch.shape
    out = batch.clone()
    for i in torch.nonzero(torch.rand(n, generator=gen) < p).flatten().tolist():
        bh, bw = int(h * float(_uniform(1, 0.1, 0.3, gen))), int(w * float(_uniform(1, 0.1, 0.3, gen)))
        top = int(torch.randint(0, h - bh + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=gen))
        out[i, :, top:top + bh, left:left + bw] = out[i].mean()
    return out


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """N x 1 x H x W images in [0, 1] to augmented images of the same shape."""
    return random_cutout(random_photometric(random_affine(batch, gen), gen), gen)


def augment_with_masks(batch: torch.Tensor, masks: torch.Tensor, gen: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment`, drawing exactly what it draws, with N x 1 x H x W masks moved by the same geometry (and
    nothing else) so they still outline the lungs of the augmented images."""
    theta = random_theta(batch.shape[0], gen)
    images = random_cutout(random_photometric(warp(batch, theta), gen), gen)
    return images, warp(masks, theta)


ACQUISITION_STRENGTH = (0.25, 1.0)  # uniform: from a hint of the look up to the strength measure-shift applies


def acquisition_names(names: Sequence[str] = ()) -> list[str]:
    """The acquisition transforms to draw from: ``names`` (every one of :data:`TRANSFORMS` when empty), or a
    ValueError naming the unknown ones and the known."""
    unknown = sorted(set(names) - set(TRANSFORMS))
    if unknown:
        raise ValueError(f"unknown acquisition transform(s) {', '.join(unknown)}; known: {', '.join(TRANSFORMS)}")
    return list(names) or list(TRANSFORMS)


def random_acquisition(images: np.ndarray, gen: torch.Generator, p: float, names: Sequence[str] = ()) -> np.ndarray:
    """N x H x W float images in [0, 1]; each, with probability ``p``, through one acquisition transform chosen
    uniformly from ``names`` (default: all) at a strength drawn from :data:`ACQUISITION_STRENGTH`. All randomness
    comes from ``gen`` (whose state a training checkpoint saves), so a resumed run draws what an uninterrupted one
    would."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the acquisition probability must lie in [0, 1], got {p}")
    names = acquisition_names(names)
    chosen = torch.rand(len(images), generator=gen) < p
    if not bool(chosen.any()):
        return images
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    out = images.copy()
    for i in torch.nonzero(chosen).flatten().tolist():
        transform = TRANSFORMS[names[int(rng.integers(len(names)))]]
        out[i] = transform(np.clip(out[i], 0.0, 1.0), rng, float(rng.uniform(*ACQUISITION_STRENGTH)))
    return out
