"""A training penalty on the heatmap outside the lungs (issue 20: "make the decision depend on the lungs").

In the spirit of "right for the right reasons" (Ross et al., 2017), which penalises input gradients outside an
annotated region, but on the map the page draws: each class's Grad-CAM before its ReLU, from the feature map and
the gradient of the class's logit (for the global-average-pooled linear head, the classifier row times each
channel's share of positive activation). The penalty is the share of those maps' absolute total, over all
classes, that lies outside the lung mask.

Why this form. On the test's toy task (a cue inside and the same cue outside the lung), the page's Grad-CAM of
the class moved from a median 0.35 of its energy inside the lung to 0.75. Simpler forms leave that map free: the
true class's positive map alone can be silenced everywhere while the class is told by evidence against the
others (the first toy's maps went all zero); and penalising the ReLU activation leaves the negative activations
that Grad-CAM, which weighs the features before the ReLU, turns positive under a negative weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gradcam_energy(feature_map: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """N x h x w: the sum over classes of the absolute value of each class's Grad-CAM map before its ReLU, as
    :func:`covidviz.explain.cam.fast_gradcam.gradcam_weights` weighs the N x K x h x w ``feature_map`` with the
    C x K classifier ``weight`` (up to the constant 1 / (h w)). The share of positive activation in each channel
    is held constant, as a gradient cannot pass through it."""
    if feature_map.ndim != 4:
        raise ValueError(f"the feature map must be N x K x h x w, got shape {tuple(feature_map.shape)}")
    positive_share = (feature_map.detach() > 0).to(feature_map.dtype).mean((2, 3))
    alpha = weight.to(feature_map.dtype)[None] * positive_share[:, None]
    return torch.einsum("nck,nkhw->nchw", alpha, feature_map).abs().sum(1)


def outside_lung_share(energy: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean, over the films that have lungs, of the share of each N x h x w non-negative ``energy`` map's total
    that lies outside the film's N x 1 x H x W lung mask (values in [0, 1], averaged onto the map's cells); 0
    when no film has lungs."""
    if masks.ndim != 4 or masks.shape[0] != energy.shape[0]:
        raise ValueError(f"masks must be N x 1 x H x W for {energy.shape[0]} maps, got shape {tuple(masks.shape)}")
    inside = F.adaptive_avg_pool2d(masks.to(energy.dtype), energy.shape[1:])[:, 0]
    has_lungs = inside.flatten(1).amax(1) > 0
    if not bool(has_lungs.any()):
        return energy.new_zeros(())
    outside = (energy * (1 - inside)).flatten(1).sum(1) / energy.flatten(1).sum(1).clamp_min(1e-6)
    return outside[has_lungs].mean()
