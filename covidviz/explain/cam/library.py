"""pytorch-grad-cam's methods, each run on a private copy of the model.

The library registers forward and backward hooks on the target layer (and Ablation-CAM swaps the
layer out). On a model shared by every session that would let one user's hooks see another's
images, so each call deep-copies the model (~30 ms), and the library's context manager removes
the hooks from that copy before it is dropped.

The target layer is ``features``, which ends before the classifier's ReLU (:mod:`covidviz.model.network`), so
its output is negative wherever the classifier reads 0. Grad-CAM++ and XGrad-CAM divide by a channel's summed
activation, which their papers take from rectified maps; fed the negative values as well, their maps sat at the
crop's corners. They get the activations the classifier reads (:func:`rectified`), and Grad-CAM++ its weights
without the library's fixed epsilon (:func:`gradcam_plus_plus`). The methods that multiply activations by the
gradient cell by cell (HiResCAM, LayerCAM) would not change, since the gradient is 0 wherever the ReLU is off;
Grad-CAM keeps the library's form, which the one-pass path reproduces.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from covidviz.explain.cam.methods import METHODS

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int], None]


def _score_cam_with_progress() -> type:
    """The library's Score-CAM, reporting progress after each batch of masked passes (which also gives the
    page a point to cancel at). Only the model the channel loop calls is wrapped: the maths stays the library's."""
    from pytorch_grad_cam import ScoreCAM

    class ScoreCAMWithProgress(ScoreCAM):
        progress: Progress | None = None
        batch_size = 32  # the library reads this attribute; twice its default, as fast and fewer callbacks

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):  # noqa: D102
            model, total, done = self.model, activations.shape[0] * activations.shape[1], 0

            def counted(batch: torch.Tensor) -> torch.Tensor:
                nonlocal done
                out = model(batch)
                done += len(batch)
                if self.progress is not None:
                    self.progress(done, total)
                return out

            self.model = counted
            try:
                return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
            finally:
                self.model = model

    return ScoreCAMWithProgress


def rectified(base: type) -> type:
    """``base`` weighing ``relu(A)``, the activations the classifier reads, in place of the layer's output ``A``."""

    class Rectified(base):
        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads,  # noqa: D102
                          eigen_smooth=False):
            return super().get_cam_image(input_tensor, target_layer, targets, np.maximum(activations, 0), grads,
                                         eigen_smooth)

    Rectified.__name__ = Rectified.__qualname__ = f"Rectified{base.__name__}"
    return Rectified


@functools.cache
def gradcam_plus_plus() -> type:
    """Grad-CAM++ on rectified activations, with equation 19 of Chattopadhay et al. divided through by the squared
    gradient, as the library's maintainer agreed it may be (pytorch-grad-cam issue 236). The library keeps the
    undivided form with a fixed epsilon of 1e-6 in the denominator; behind global average pooling over 16 x 16
    cells the gradients are about 1e-4, so 2 g^2 (about 1e-8) is swamped by the epsilon and the channel weights
    become relu(g)^3 / 1e-6, ranking channels by the cube of their gradient. Divided through, the denominator is
    2 + g * sum(A) >= 2 wherever the gradient is positive (the only cells the ReLU in the weights keeps)."""
    from pytorch_grad_cam import GradCAMPlusPlus

    class RectifiedGradCAMPlusPlus(rectified(GradCAMPlusPlus)):
        def get_cam_weights(self, input_tensor, target_layers, targets, activations, grads):  # noqa: D102
            axes = tuple(range(2, activations.ndim))
            positive = np.where(grads > 0, grads, 0)
            alpha = np.where(grads > 0, 1 / (2 + np.sum(activations, axis=axes, keepdims=True) * positive), 0)
            return np.sum(positive * alpha, axis=axes)

    return RectifiedGradCAMPlusPlus


@functools.cache
def xgradcam() -> type:
    """XGrad-CAM on rectified activations: its weight divides by the channel's summed activation."""
    from pytorch_grad_cam import XGradCAM
    return rectified(XGradCAM)


OWN_CLASSES: dict[str, Callable[[], type]] = {
    "Score-CAM": _score_cam_with_progress, "Grad-CAM++": gradcam_plus_plus, "XGrad-CAM": xgradcam}


def cam_class(method: str) -> type:
    """The pytorch-grad-cam class that draws ``method``'s maps here: the library's, or its adaptation above."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    from covidviz._torchvision_compat import ensure_torchvision_importable
    ensure_torchvision_importable()
    import pytorch_grad_cam
    return OWN_CLASSES[method]() if method in OWN_CLASSES else getattr(pytorch_grad_cam, METHODS[method])


def library_cam(model: torch.nn.Module, method: str, batch: np.ndarray | torch.Tensor, class_index: int,
                progress: Progress | None = None) -> np.ndarray:
    """One map (H x W, min-max scaled to [0, 1] by the library) for ``class_index`` of a 1-image batch."""
    drawing = cam_class(method)
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    private = copy.deepcopy(model).float().eval()
    with drawing(model=private, target_layers=[private.features]) as cam:
        cam.progress = progress
        maps = cam(input_tensor=torch.as_tensor(batch).float(), targets=[ClassifierOutputTarget(class_index)])
    return maps[0]
