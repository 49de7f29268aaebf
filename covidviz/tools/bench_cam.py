"""The Diagnose page's heatmap path against one forward pass and against the straightforward pipeline.

Straightforward: a prediction forward pass, then pytorch-grad-cam's ``GradCAM`` (default settings,
on the same model without in-place ReLU) once per class: three more forward and backward passes.
Page path: one forward pass that yields the probabilities and all three maps (no backward pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from covidviz.explain.cam.fast_gradcam import cam_pass
from covidviz.explain.cam.scaling import normalise_like_library
from covidviz.model.inference import softmax
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from covidviz.timing import median_seconds


def page_path(predictor: Predictor, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and the three maps at input size, exactly as the page computes them (on the
    predictor's engine)."""
    result = cam_pass(predictor.engine.run(batch.numpy()), predictor.classifier_weight)
    return softmax(result.logits, predictor.temperature)[0], normalise_like_library(result.maps[0], batch.shape[-1])


def straightforward(predictor: Predictor, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = predictor.model
    with torch.inference_mode():
        probs = softmax(model(batch).numpy(), predictor.temperature)[0]
    maps = []
    for k in range(probs.shape[0]):
        with GradCAM(model=model, target_layers=[model.features]) as cam:
            maps.append(cam(input_tensor=batch, targets=[ClassifierOutputTarget(k)])[0])
    return probs, np.stack(maps)


def bench_cam(predictor: Predictor, canonical: np.ndarray, repeats: int) -> dict[str, Any]:
    batch = torch.from_numpy(model_batch([canonical], predictor.input_size))
    model = predictor.model

    def forward() -> None:
        with torch.inference_mode():
            model(batch)

    t_forward = median_seconds(forward, repeats)
    t_page = median_seconds(lambda: page_path(predictor, batch), repeats)
    t_straight = median_seconds(lambda: straightforward(predictor, batch), max(3, repeats // 3))
    _, fast_maps = page_path(predictor, batch)
    _, ref_maps = straightforward(predictor, batch)
    return {"input_size": predictor.input_size, "forward_ms": round(t_forward * 1000, 1), "page_path_ms": round(t_page * 1000, 1),
            "straightforward_ms": round(t_straight * 1000, 1),
            "page_over_forward": round(t_page / t_forward, 2), "straightforward_over_page": round(t_straight / t_page, 1),
            "max_abs_diff_vs_pytorch_grad_cam": float(np.abs(fast_maps - ref_maps).max())}
