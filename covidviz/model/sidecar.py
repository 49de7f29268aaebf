"""The model's JSON sidecar: read without importing torch, so light pages stay light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidviz.errors import WeightsError

SIDECAR_FILE = "model.json"
from covidviz.paths import WEIGHTS_DIR as DEFAULT_WEIGHTS_DIR  # noqa: E402,F401  (re-exported)


def read_sidecar(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SIDECAR_FILE
    if not path.is_file():
        raise WeightsError(f"No model sidecar at {path}. Train a model or restore weights/ from the repository.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"The sidecar {path} is not valid JSON ({exc}).") from None


def update_sidecar(directory: str | Path, **fields: Any) -> None:
    """Add fields (calibration, for example) without touching the weights or their hash."""
    sidecar = read_sidecar(directory)
    sidecar.update(fields)
    (Path(directory) / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
