"""Batched forward passes on canonical images: the one place that runs the model for numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from covidviz.model.preprocessing import model_batch

if TYPE_CHECKING:
    import torch


def pooled_and_logits(model: torch.nn.Module, images: Sequence[np.ndarray] | np.ndarray, size: int,
                      batch_size: int = 32, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N x 1024, what the classifier reads) and logits (N x K), one pass.

    ``fast`` uses bf16 autocast (about 2x on this CPU; labels agree, see ``bench``)."""
    import torch
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pooled, logits = [torch.zeros(0, model.classifier.in_features)], [torch.zeros(0, model.classifier.out_features)]
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
        for start in range(0, len(images), batch_size):
            chunk = [np.asarray(im, dtype=np.float32) for im in images[start:start + batch_size]]
            feats = model.pool(model.features(torch.from_numpy(model_batch(chunk, size)).to(device))).float()
            pooled.append(feats.cpu())
            logits.append(model.classifier(feats).float().cpu())
    model.train(was_training)
    return torch.cat(pooled).numpy(), torch.cat(logits).numpy()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_canonical(model: torch.nn.Module, images: Sequence[np.ndarray] | np.ndarray, size: int,
                      batch_size: int = 32, fast: bool = False, temperature: float = 1.0) -> np.ndarray:
    """N x K probabilities."""
    return softmax(pooled_and_logits(model, images, size, batch_size, fast)[1], temperature)
