"""Grad-CAM for every class from one forward pass, with no backward pass and no hooks.

For DenseNet's head, logit_c = b_c + sum_k W_ck * mean_ij relu(A_kij), where A is the output of
``features``. Its gradient with respect to A is W_ck / (h*w) * [A_kij > 0], so Grad-CAM's channel
weight (the spatial mean of that gradient) is W_ck * frac_k / (h*w), with frac_k the share of
positive positions in channel k. Everything follows from A, which the prediction computes anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from covidviz.model.forward_pass import ForwardPass

if TYPE_CHECKING:
    import torch

    from covidviz.model.network import GapClassifier


def gradcam_weights(classifier_weight: np.ndarray, feature_map: np.ndarray) -> np.ndarray:
    """N x K x C channel weights: the spatial mean of d logit_c / d A_k for every class c."""
    h, w = feature_map.shape[-2:]
    positive_share = (feature_map > 0).mean(axis=(2, 3), dtype=np.float32)  # N x C
    return classifier_weight[None, :, :] * positive_share[:, None, :] / (h * w)


@dataclass(frozen=True)
class CamPass:
    """Everything one forward pass gives: logits (N x K), pooled features (N x C) for the OOD guard,
    and raw Grad-CAM maps (N x K x h x w, ReLU applied, not normalised; 1/32 of the input for DenseNet-121, 4 x 4
    at 128 px, and 1/16 for ``densenet121_os16``, 16 x 16 at 256 px)."""

    logits: np.ndarray
    pooled: np.ndarray
    maps: np.ndarray


def cam_pass(forward: ForwardPass, classifier_weight: np.ndarray) -> CamPass:
    """Grad-CAM for every class from a forward pass of any engine (see :mod:`covidviz.model.engine`)."""
    weights = gradcam_weights(classifier_weight, forward.feature_map)
    maps = np.maximum(np.einsum("nkc,nchw->nkhw", weights, forward.feature_map, optimize=True), 0)
    return CamPass(logits=forward.logits, pooled=forward.pooled, maps=maps.astype(np.float32))


def gradcam_all_classes(model: GapClassifier, batch: np.ndarray | torch.Tensor) -> CamPass:
    """Prediction and Grad-CAM for every class in one PyTorch forward pass (evaluation and the tests' reference;
    the dashboard runs :func:`cam_pass` on its predictor's engine)."""
    import torch
    with torch.inference_mode():
        feature_map = model.features(torch.as_tensor(batch).float())
        logits = model.head(feature_map)
    weight = model.classifier.weight.detach().numpy()
    return cam_pass(ForwardPass(logits=logits.numpy(), feature_map=feature_map.numpy()), weight)
