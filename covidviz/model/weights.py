"""Shipped weights: safetensors (fp16) plus a JSON sidecar, verified by sha256 on every load.

safetensors holds tensors only, so loading cannot execute code the way a pickle can. The sidecar names the
architecture; loading builds that architecture and refuses weights that do not fit it exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from covidviz import CLASSES
from covidviz.errors import WeightsError
from covidviz.model.sidecar import ARCHITECTURE_NAMES
from covidviz.paths import WEIGHTS_DIR
from covidviz.verified import WEIGHTS_FILE, load_verified, read_sidecar, save_verified, verified_file

if TYPE_CHECKING:
    from covidviz.model.network import GapClassifier


def save_weights(model: GapClassifier, directory: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write the classifier's fp16 weights and sidecar (with its architecture and the weights' sha256);
    return the weights path."""
    return save_verified(model.state_dict(), directory, {**sidecar, "classes": list(CLASSES)}, model.architecture)


def verified_sidecar(directory: str | Path = WEIGHTS_DIR, expect: str | None = None) -> dict[str, Any]:
    """The sidecar of verified weights, read without building the network; :class:`WeightsError` on an unknown
    architecture, another one than ``expect`` (when given), other classes, or a file whose sha256 is not the
    sidecar's."""
    return verified_file(directory, known_architecture(directory, expect))[1]


def known_architecture(directory: str | Path, expect: str | None = None) -> str:
    """The architecture the sidecar of ``directory`` names, once this covidviz knows it (and it is ``expect``,
    when given) with these classes."""
    sidecar = read_sidecar(directory)
    arch = sidecar.get("architecture")
    if arch not in ARCHITECTURE_NAMES or sidecar.get("classes") != list(CLASSES):
        raise WeightsError(f"The sidecar describes {arch} with classes {sidecar.get('classes')}; this covidviz "
                           f"knows {', '.join(ARCHITECTURE_NAMES)} with {list(CLASSES)}.")
    if expect is not None and arch != expect:
        raise WeightsError(f"The sidecar in {directory} describes {arch}; {expect} was expected.")
    return arch


def classifier_weight(directory: str | Path, sidecar: dict[str, Any]) -> np.ndarray:
    """The head's K x C weight (fp32) from the verified weights file, read without torch: what the one-pass
    Grad-CAM weighs the feature map with on an engine that serves an export."""
    from safetensors import safe_open
    path = Path(directory) / sidecar.get("weights_file", WEIGHTS_FILE)
    with safe_open(str(path), framework="numpy") as handle:
        return handle.get_tensor("classifier.weight").astype(np.float32)


def load_weights(directory: str | Path = WEIGHTS_DIR, expect: str | None = None
                 ) -> tuple[GapClassifier, dict[str, Any]]:
    """The verified model (fp32, eval mode) and its sidecar; :class:`WeightsError` on any mismatch: those of
    :func:`verified_sidecar`, or tensors that do not fit the architecture the sidecar names."""
    from covidviz.model.network import architecture, build_model
    directory = Path(directory)
    arch = known_architecture(directory, expect)
    state, sidecar = load_verified(directory, arch)
    path = directory / sidecar.get("weights_file", WEIGHTS_FILE)
    model = build_model(len(CLASSES), arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        summary = str(exc).splitlines()[0]
        raise WeightsError(f"The weights in {path} do not fit {architecture(arch).title} with {len(CLASSES)} "
                           f"classes ({summary}).") from None
    return model.eval(), sidecar
