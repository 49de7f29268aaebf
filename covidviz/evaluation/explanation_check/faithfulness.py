"""Faithfulness without retraining: ROAD (Rong et al., "A consistent and efficient evaluation strategy for
attribution methods", ICML 2022), with pytorch-grad-cam's implementation.

Pixels are removed in the order a map ranks them and filled by noisy linear imputation from their
neighbours (so the removal itself leaves no shape the model could read). Removing the most relevant
pixels first (MoRF) should drop the explained class's probability fast; removing the least relevant
first (LeRF) should barely move it. The combined score, (LeRF - MoRF) / 2 averaged over the removal
levels, is higher for a more faithful map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from covidviz._torchvision_compat import ensure_torchvision_importable

# The library's "percentile" p keeps p% of the pixels and removes the rest: MoRF at p removes the (100 - p)%
# most relevant, LeRF at p the (100 - p)% least relevant. Reported as the share removed.
ROAD_PERCENTILES: tuple[int, ...] = (10, 30, 50, 70, 90)


class CalibratedProbability:
    """ROAD's target: the calibrated probability of one class (what the Diagnose page shows)."""

    def __init__(self, class_index: int, temperature: float = 1.0) -> None:
        self.class_index, self.temperature = class_index, temperature

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)[..., self.class_index]


def tie_broken_ranks(cam: np.ndarray, seed: int = 0) -> np.ndarray:
    """The map as its pixel ranks in [0, 1], equal values ordered at random (seeded).

    ROAD only uses the order of the pixels, but the library thresholds at a percentile of the values: a
    map that is zero over half the image would remove that whole half at every level up to 50%. Ranks
    make each level remove exactly its share."""
    flat = np.asarray(cam, dtype=np.float64).ravel()
    order = np.lexsort((np.random.default_rng(seed).random(flat.size), flat))
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.arange(flat.size) / max(flat.size - 1, 1)
    return ranks.reshape(np.shape(cam)).astype(np.float32)


def road_scores(model: torch.nn.Module, batch: torch.Tensor, cam: np.ndarray, class_index: int,
                percentiles: Sequence[int] = ROAD_PERCENTILES, temperature: float = 1.0, seed: int = 0
                ) -> dict[str, Any]:
    """MoRF and LeRF (change in the class's probability after removal) per removal level, and the
    combined score. Computed in ``ROADCombined``'s order under a fixed seed, so ``combined`` equals what
    ``ROADCombined(percentiles)`` returns for the same seed."""
    ensure_torchvision_importable()
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

    ranked = tie_broken_ranks(cam, seed)[None]
    targets = [CalibratedProbability(class_index, temperature)]
    model = model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lerf = [float(ROADLeastRelevantFirst(p)(batch.float(), ranked, targets, model)[0]) for p in percentiles]
        morf = [float(ROADMostRelevantFirst(p)(batch.float(), ranked, targets, model)[0]) for p in percentiles]
    return {"removed_percent": [100 - p for p in percentiles], "morf": morf, "lerf": lerf,
            "combined": float((np.mean(np.float32(lerf)) - np.mean(np.float32(morf))) / 2)}
