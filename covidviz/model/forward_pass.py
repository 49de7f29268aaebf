"""The engines there are and what every one returns, in a module of its own: each engine (PyTorch, ONNX
Runtime, OpenVINO) names it without importing the module that chooses among them, and the command line
lists the choices without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "openvino-int8")
EXACT_ENGINES = ("torch", "onnxruntime", "openvino")  # equal to PyTorch fp32 within the probe tolerance


@dataclass(frozen=True)
class ForwardPass:
    """Logits (N x K) and the last feature map (N x C x h x w, before the head's ReLU)."""

    logits: np.ndarray
    feature_map: np.ndarray

    @property
    def pooled(self) -> np.ndarray:
        """What the classifier reads (N x C): ReLU, then global average pooling; the OOD guard reads it too."""
        return np.maximum(self.feature_map, 0).mean(axis=(2, 3))


class Engine(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> ForwardPass:
        """One forward pass over an N x 3 x S x S standardised batch (``preprocessing.model_batch``)."""


def torch_threads() -> int:
    """PyTorch's intra-op thread count: every engine's default, so that all are measured on equal terms (a
    serving plan records the count it was chosen with, so a server without torch uses that)."""
    import torch
    return torch.get_num_threads()
