"""Resumable training state: one writer and one reader for every training loop.

A checkpoint holds the model, optimiser, learning-rate schedule, the sampler's random generator and the
loop's progress (JSON), so a resumed run continues exactly where an interrupted one stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer,
                    schedule: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator, progress: dict[str, Any],
                    **extra: Any) -> None:
    """Write atomically: a kill mid-write never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "generator": gen.get_state(), "progress": json.dumps(progress), **extra}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer,
                    schedule: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore the state in place; return the progress and the raw checkpoint (for extra fields)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only, no code
    model.load_state_dict(ckpt["model"])
    optimiser.load_state_dict(ckpt["optimiser"])
    schedule.load_state_dict(ckpt["schedule"])
    gen.set_state(ckpt["generator"])
    return json.loads(ckpt["progress"]), ckpt


def load_init(path: str | Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """State dict and earlier recipe stages from a run checkpoint, a shipped weights folder (or its
    safetensors file) or a torchvision ``.pth``: whatever a model may start from or be averaged with."""
    p = Path(path).expanduser()
    if p.is_dir() or p.suffix == ".safetensors":
        from covidviz.model.weights import load_weights
        model, sidecar = load_weights(p if p.is_dir() else p.parent)
        return model.state_dict(), sidecar.get("training", {}).get("stages", [])
    blob = torch.load(p, map_location="cpu", weights_only=True)  # no arbitrary code from pickles
    if isinstance(blob, dict) and "model" in blob:
        return blob["model"], blob.get("stages", [])
    return blob, [{"stage": "external initialisation", "checkpoint": p.name}]
