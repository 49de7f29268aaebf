"""Shipped weights: safetensors (fp16) plus a JSON sidecar, verified by sha256 on every load.

safetensors holds tensors only, so loading cannot execute code the way a pickle can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from covidviz import CLASSES
from covidviz.errors import WeightsError
from covidviz.model.network import ARCHITECTURE, CxrDenseNet, build_model
from covidviz.model.sidecar import DEFAULT_WEIGHTS_DIR, SIDECAR_FILE, read_sidecar, update_sidecar  # noqa: F401  (re-exported)
from covidviz.verified import WEIGHTS_FILE, load_verified, save_verified, sha256_of  # noqa: F401  (re-exported)


def save_weights(model: torch.nn.Module, directory: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write the classifier's fp16 weights and sidecar (with the weights' sha256); return the weights path."""
    return save_verified(model.state_dict(), directory, {**sidecar, "classes": list(CLASSES)}, ARCHITECTURE)


def load_weights(directory: str | Path = DEFAULT_WEIGHTS_DIR) -> tuple[CxrDenseNet, dict[str, Any]]:
    """The verified model (fp32, eval mode) and its sidecar; :class:`WeightsError` on any mismatch."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    if sidecar.get("architecture") != ARCHITECTURE or sidecar.get("classes") != list(CLASSES):
        raise WeightsError(f"The sidecar describes {sidecar.get('architecture')} with classes {sidecar.get('classes')}; "
                           f"this covidviz expects {ARCHITECTURE} with {list(CLASSES)}.")
    state, sidecar = load_verified(directory, ARCHITECTURE)
    path = directory / sidecar.get("weights_file", WEIGHTS_FILE)
    model = build_model(len(CLASSES))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"The weights in {path} do not fit DenseNet-121 with {len(CLASSES)} classes ({exc}).") from None
    return model.eval(), sidecar
