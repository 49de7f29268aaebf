"""Shipped weights: safetensors (fp16) plus a JSON sidecar, verified by sha256 on every load.

safetensors holds tensors only, so loading cannot execute code the way a pickle can.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from covidviz import CLASSES
from covidviz.errors import WeightsError
from covidviz.model.network import ARCHITECTURE, CxrDenseNet, build_model
from covidviz.model.sidecar import DEFAULT_WEIGHTS_DIR, SIDECAR_FILE, read_sidecar, update_sidecar  # noqa: F401  (re-exported)

WEIGHTS_FILE = "model.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_verified(state: dict[str, torch.Tensor], directory: str | Path, sidecar: dict[str, Any],
                  architecture: str) -> Path:
    """Write a state dict as fp16 safetensors and its sidecar carrying the file's sha256.

    One writer for every shipped network (classifier, lung segmenter), so each is verified the same way."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in state.items()}
    path = directory / WEIGHTS_FILE
    save_file(state, str(path), metadata={"architecture": architecture})
    sidecar = {**sidecar, "architecture": architecture, "weights_file": WEIGHTS_FILE, "weights_sha256": sha256_of(path)}
    (directory / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def load_verified(directory: str | Path, architecture: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The fp32 state dict and sidecar of ``directory``; :class:`WeightsError` unless the sidecar names
    ``architecture`` and the weights file's sha256 is the one the sidecar records."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    if sidecar.get("architecture") != architecture:
        raise WeightsError(f"The sidecar in {directory} describes {sidecar.get('architecture')}; "
                           f"expected {architecture}.")
    path = directory / sidecar.get("weights_file", WEIGHTS_FILE)
    if not path.is_file():
        raise WeightsError(f"The weights file {path} is missing.")
    actual = sha256_of(path)
    if actual != sidecar.get("weights_sha256"):
        raise WeightsError(f"The weights file {path} is corrupt or was replaced: sha256 {actual[:12]}… "
                           f"does not match the sidecar's {str(sidecar.get('weights_sha256'))[:12]}….")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"The weights file {path} cannot be read ({exc}).") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, sidecar


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
