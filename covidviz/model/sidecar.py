"""The model's JSON sidecar: read without importing torch, so light pages stay light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidviz.paths import WEIGHTS_DIR as DEFAULT_WEIGHTS_DIR  # noqa: F401  (re-exported)
from covidviz.verified import SIDECAR_FILE, read_sidecar  # noqa: F401  (re-exported)

# The backbones covidviz builds (covidviz.model.network.ARCHITECTURES), named here for light callers: the CLI.
ARCHITECTURE_NAMES = ("densenet121", "densenet201", "resnet50", "vgg19_bn", "small_cnn")


def update_sidecar(directory: str | Path, **fields: Any) -> None:
    """Add fields (calibration, for example) without touching the weights or their hash."""
    sidecar = read_sidecar(directory)
    sidecar.update(fields)
    (Path(directory) / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
