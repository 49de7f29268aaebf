"""The shipped model behind one small API: uploads in, calibrated probabilities out.

Used by the CLI and the dashboard alike, so both show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covidviz import CLASSES
from covidviz.errors import XrayInputError
from covidviz.model.inference import pooled_and_logits, softmax
from covidviz.io.loading import load_xray
from covidviz.model.ood import load_guard, ood_message
from covidviz.model.preprocessing import canonical_image
from covidviz.model.weights import DEFAULT_WEIGHTS_DIR, load_weights
from covidviz.io.xray import Xray


@dataclass(frozen=True)
class Prediction:
    """One image's outcome: probabilities (calibrated) or the reason it was rejected."""

    name: str
    probabilities: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    info: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str | None:
        return max(self.probabilities, key=self.probabilities.get) if self.probabilities else None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.name, "error": self.error}
        return {"file": self.name, "label": self.label,
                "probabilities": {c: round(p, 6) for c, p in self.probabilities.items()},
                "warnings": list(self.warnings)}


class Predictor:
    """Loads and verifies the weights once; thread-safe for inference (no hooks, no state)."""

    def __init__(self, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, fast: bool = False) -> None:
        self.model, self.sidecar = load_weights(weights_dir)
        self.guard = load_guard(Path(weights_dir))  # None for a model evaluate has not seen yet
        self.model = self.model.to(memory_format=torch.channels_last)
        self.input_size = int(self.sidecar["input_size"])
        self.temperature = float(self.sidecar.get("temperature", 1.0))
        self.fast = fast

    @property
    def version(self) -> str:
        return self.sidecar["weights_sha256"][:12]

    def probabilities(self, canonical: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """N x 3 calibrated probabilities for canonical images."""
        _, logits = pooled_and_logits(self.model, canonical, self.input_size, batch_size, self.fast)
        return softmax(logits, self.temperature)

    def predict_xrays(self, xrays: list[Xray], names: list[str]) -> list[Prediction]:
        """Calibrated probabilities, with the loader's warnings and the out-of-distribution note if any."""
        if not xrays:
            return []
        canonical = [canonical_image(x.pixels) for x in xrays]
        pooled, logits = pooled_and_logits(self.model, canonical, self.input_size, fast=self.fast)
        probs = softmax(logits, self.temperature)
        distances = self.guard.distance(pooled) if self.guard is not None else [None] * len(xrays)
        out = []
        for name, xray, row, distance in zip(names, xrays, probs, distances):
            note = ood_message(distance, self.guard)
            out.append(Prediction(name=name, probabilities={c: float(p) for c, p in zip(CLASSES, row)},
                                  warnings=((note,) if note else ()) + xray.warnings, info=xray.info))
        return out

    def predict_bytes(self, data: bytes, name: str) -> Prediction:
        try:
            xray = load_xray(data, name)
        except XrayInputError as exc:
            return Prediction(name=name, error=str(exc))
        return self.predict_xrays([xray], [name])[0]
