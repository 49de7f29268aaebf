"""pytorch-grad-cam's methods, each run on a private copy of the model.

The library registers forward and backward hooks on the target layer (and Ablation-CAM swaps the
layer out). On a model shared by every session that would let one user's hooks see another's
images, so each call deep-copies the model (~30 ms), and the library's context manager removes
the hooks from that copy before it is dropped.
"""

from __future__ import annotations

import copy
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


def library_cam(model: torch.nn.Module, method: str, batch: np.ndarray | torch.Tensor, class_index: int,
                progress: Progress | None = None) -> np.ndarray:
    """One map (H x W, min-max scaled to [0, 1] by the library) for ``class_index`` of a 1-image batch."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    from covidviz._torchvision_compat import ensure_torchvision_importable
    ensure_torchvision_importable()
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = _score_cam_with_progress() if method == "Score-CAM" else getattr(pytorch_grad_cam, METHODS[method])
    private = copy.deepcopy(model).float().eval()
    with cam_class(model=private, target_layers=[private.features]) as cam:
        cam.progress = progress
        maps = cam(input_tensor=torch.as_tensor(batch).float(), targets=[ClassifierOutputTarget(class_index)])
    return maps[0]
