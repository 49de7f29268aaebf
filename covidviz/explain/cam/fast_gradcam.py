"""Grad-CAM for every class from one forward pass, with no backward pass and no hooks.

For DenseNet's head, logit_c = b_c + sum_k W_ck * mean_ij relu(A_kij), where A is the output of
``features``. Its gradient with respect to A is W_ck / (h*w) * [A_kij > 0], so Grad-CAM's channel
weight (the spatial mean of that gradient) is W_ck * frac_k / (h*w), with frac_k the share of
positive positions in channel k. Everything follows from A, which the prediction computes anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from covidviz.model.network import CxrDenseNet


def gradcam_weights(model: CxrDenseNet, feature_map: torch.Tensor) -> torch.Tensor:
    """N x K x C channel weights: the spatial mean of d logit_c / d A_k for every class c."""
    h, w = feature_map.shape[-2:]
    positive_share = (feature_map > 0).float().mean(dim=(2, 3))  # N x C
    return model.classifier.weight[None, :, :] * positive_share[:, None, :] / (h * w)


@dataclass(frozen=True)
class CamPass:
    """Everything one forward pass gives: logits (N x K), pooled features (N x C) for the OOD guard,
    and raw Grad-CAM maps (N x K x h x w, ReLU applied, not normalised; 7 x 7 at 224 px input)."""

    logits: np.ndarray
    pooled: np.ndarray
    maps: np.ndarray


def gradcam_all_classes(model: CxrDenseNet, batch: torch.Tensor) -> CamPass:
    """Prediction and Grad-CAM for every class in one forward pass (see :mod:`covidviz.explain.cam.scaling`)."""
    with torch.inference_mode():
        feature_map = model.features(batch.float())
        pooled = model.pool(feature_map)
        logits = model.classifier(pooled)
        weights = gradcam_weights(model, feature_map)
        maps = torch.relu(torch.einsum("nkc,nchw->nkhw", weights, feature_map))
    return CamPass(logits=logits.numpy(), pooled=pooled.numpy(), maps=maps.numpy())
