"""Inference with the shipped lung segmenter (``weights/lungs/``, verified by sha256 like the classifier)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from covidviz.lungs.network import ARCHITECTURE, build_segmenter, segmenter_input

if TYPE_CHECKING:
    import torch

LUNGS_SUBDIR = "lungs"
PLAUSIBILITY_KEY = "plausibility"  # the sidecar's record of the confidence floor and how it was fitted


def keep_largest_two(mask: np.ndarray) -> np.ndarray:
    """The two largest connected regions of a binary mask (the lungs), dropping specks elsewhere."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 3:
        return mask.astype(bool)
    keep = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:2]
    return np.isin(labels, keep)


class LungSegmenter:
    """Lung masks at 256 x 256 for grayscale images of any size (the mask covers the whole image).

    Its forward pass runs in PyTorch unless :meth:`served_by` hands it another engine's (the model layer
    serves it on ONNX Runtime where that is exact and faster: :mod:`covidviz.model.segmenter_engine`). Built
    from verified weights without their network (``load_segmenter(..., network=False)``), it loads the
    PyTorch network on first use: a server that reads with ONNX Runtime never does."""

    def __init__(self, model: torch.nn.Module | None, sidecar: dict[str, Any], directory: Path | None = None) -> None:
        self._model = None if model is None else _serving_form(model)
        self.sidecar = sidecar
        self.directory = directory
        self.engine = "torch"
        self._run: Callable[[np.ndarray], np.ndarray] = self.torch_probabilities
        self._lock = threading.Lock()

    @property
    def sha256(self) -> str:
        return str(self.sidecar.get("weights_sha256", ""))

    @property
    def min_confidence(self) -> float | None:
        """The confidence floor a pair of lungs must reach to be plausible (``fit-lung-floor``); None: none fitted."""
        floor = self.sidecar.get(PLAUSIBILITY_KEY, {}).get("min_confidence")
        return None if floor is None else float(floor)

    @property
    def max_flat(self) -> float | None:
        """The largest flat share of a pair of lungs that is plausible (``fit-lung-floor``); None: none fitted."""
        limit = self.sidecar.get(PLAUSIBILITY_KEY, {}).get("max_flat")
        return None if limit is None else float(limit)

    @property
    def model(self) -> torch.nn.Module:
        """The PyTorch network, loaded (and verified again) on first use when this segmenter was built without it."""
        with self._lock:
            if self._model is None:
                if self.directory is None:
                    raise ValueError("this lung segmenter has no PyTorch network and no folder to load one from")
                self._model = _serving_form(_network(self.directory)[0])
            return self._model

    def torch_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """N x 256 x 256 probabilities for the standardised N x 1 x 256 x 256 input, in PyTorch (the reference
        every other engine is checked against)."""
        import torch
        model = self.model
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).contiguous(
            memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            return torch.sigmoid(model(tensor)).squeeze(1).numpy()

    def with_record(self, sidecar: dict[str, Any]) -> LungSegmenter:
        """This segmenter (same network, same engine) under another record of the same weights: a refitted
        confidence floor must not be hidden by an engine built for the record before it."""
        if sidecar.get("weights_sha256") != self.sha256:
            raise ValueError("a record of other weights cannot describe this segmenter")
        other = LungSegmenter(self._model, sidecar, self.directory)
        other.engine, other._run = self.engine, self._run
        return other

    def served_by(self, engine: str, run: Callable[[np.ndarray], np.ndarray]) -> LungSegmenter:
        """This segmenter (same weights, same record) with its forward pass on ``run``, named ``engine``."""
        served = LungSegmenter(self._model, self.sidecar, self.directory)
        served.engine, served._run = engine, run
        return served

    def probabilities(self, grays: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """N x 256 x 256 lung probabilities."""
        out = [self._run(segmenter_input(list(grays[start:start + batch_size])))
               for start in range(0, len(grays), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 256, 256), np.float32)

    def masks(self, grays: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """N x 256 x 256 boolean masks, each cleaned to its two largest regions."""
        return np.stack([keep_largest_two(p > 0.5) for p in self.probabilities(grays, batch_size)]) \
            if len(grays) else np.empty((0, 256, 256), bool)


def _serving_form(model: torch.nn.Module) -> torch.nn.Module:
    import torch
    return model.eval().to(memory_format=torch.channels_last)


def _network(directory: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from covidviz.verified import load_verified
    state, sidecar = load_verified(directory / LUNGS_SUBDIR, ARCHITECTURE)
    model = build_segmenter()
    model.load_state_dict(state)
    return model, sidecar


def load_segmenter(weights_dir: str | Path, network: bool = True) -> LungSegmenter:
    """The verified segmenter in ``<weights_dir>/lungs``; :class:`~covidviz.errors.WeightsError` if absent or
    altered. ``network=False`` verifies the weights but leaves the PyTorch network to its first use."""
    from covidviz.verified import verified_file
    weights_dir = Path(weights_dir)
    if network:  # verified once, as the network is built
        return LungSegmenter(*_network(weights_dir), weights_dir)
    return LungSegmenter(None, verified_file(weights_dir / LUNGS_SUBDIR, ARCHITECTURE)[1], weights_dir)
