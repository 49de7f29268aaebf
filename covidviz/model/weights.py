"""Shipped weights: safetensors (fp16) plus a JSON sidecar, verified by sha256 on every load.

safetensors holds tensors only, so loading cannot execute code the way a pickle can. The sidecar names the
architecture; loading builds that architecture and refuses weights that do not fit it exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from covidviz import CLASSES
from covidviz.errors import WeightsError
from covidviz.model.network import ARCHITECTURES, GapClassifier, architecture, build_model
from covidviz.paths import WEIGHTS_DIR
from covidviz.verified import WEIGHTS_FILE, load_verified, read_sidecar, save_verified


def save_weights(model: GapClassifier, directory: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write the classifier's fp16 weights and sidecar (with its architecture and the weights' sha256);
    return the weights path."""
    return save_verified(model.state_dict(), directory, {**sidecar, "classes": list(CLASSES)}, model.architecture)


def load_weights(directory: str | Path = WEIGHTS_DIR, expect: str | None = None
                 ) -> tuple[GapClassifier, dict[str, Any]]:
    """The verified model (fp32, eval mode) and its sidecar; :class:`WeightsError` on any mismatch: an
    unknown architecture, another one than ``expect`` (when given), other classes, a file whose sha256 is not
    the sidecar's, or tensors that do not fit the architecture the sidecar names."""
    directory = Path(directory)
    sidecar = read_sidecar(directory)
    arch = sidecar.get("architecture")
    if arch not in ARCHITECTURES or sidecar.get("classes") != list(CLASSES):
        raise WeightsError(f"The sidecar describes {arch} with classes {sidecar.get('classes')}; this covidviz "
                           f"knows {', '.join(ARCHITECTURES)} with {list(CLASSES)}.")
    if expect is not None and arch != expect:
        raise WeightsError(f"The sidecar in {directory} describes {arch}; {expect} was expected.")
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
