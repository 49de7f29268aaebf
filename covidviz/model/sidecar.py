"""Updating the model's JSON sidecar without importing torch, so light pages stay light (reading it:
:func:`covidviz.verified.read_sidecar`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidviz.verified import SIDECAR_FILE, read_sidecar

# The backbones covidviz builds (covidviz.model.network.ARCHITECTURES), named here for light callers: the CLI.
ARCHITECTURE_NAMES = ("densenet121", "densenet201", "densenet121_os16", "densenet121_os16_lp", "densenet121_os8",
                      "resnet50", "vgg19_bn", "small_cnn")


def update_sidecar(directory: str | Path, **fields: Any) -> None:
    """Add fields (calibration, for example) without touching the weights or their hash."""
    sidecar = read_sidecar(directory)
    sidecar.update(fields)
    (Path(directory) / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
