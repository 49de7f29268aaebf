"""Weight averaging, a "model soup" (Wortsman et al., ICML 2022): fine-tunes that started from one model tend to
lie in one basin of the loss, so the average of their weights is itself a model, often as good as the better of
them on what each learned, at one model's cost per image, where an ensemble of N models costs N forward passes.

The averaged file is a run checkpoint like ``best.pt`` (weights and recipe stages), so everything that reads a
checkpoint reads it: ``train --init``, ``scripts/recipe_ablation.py`` (``FILE:ARCH:SIZE``) and export.
BatchNorm's running statistics are averaged with the rest, as in the paper's uniform soup.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from covidviz.model.provenance import WEIGHT_AVERAGE
from covidviz.training.checkpoint import load_init


def average_states(states: Sequence[Mapping[str, torch.Tensor]], shares: Sequence[float] | None = None
                   ) -> dict[str, torch.Tensor]:
    """The share-weighted mean of state dicts of one architecture (equal shares by default), in fp32.
    Integer buffers (BatchNorm's batch counters) are counts, not weights: the largest is kept.
    :class:`ValueError` for fewer than two states, shares that do not fit, or states of different models."""
    if len(states) < 2:
        raise ValueError(f"average at least two models ({len(states)} given)")
    shares = [1.0] * len(states) if shares is None else [float(s) for s in shares]
    if len(shares) != len(states) or min(shares) <= 0:
        raise ValueError(f"give one positive share per model: {len(states)} models, shares {list(shares)}")
    total = sum(shares)
    first = states[0]
    for index, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            differ = sorted(set(state) ^ set(first))[:3]
            raise ValueError(f"model {index} has other tensors than model 1 (e.g. {differ}): average models of "
                             "one architecture")
        shapes = [key for key in first if state[key].shape != first[key].shape]
        if shapes:
            raise ValueError(f"model {index} differs from model 1 in the shape of {shapes[0]}: average models of "
                             "one architecture and size")
    averaged = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            averaged[key] = sum(state[key].float() * (share / total) for state, share in zip(states, shares))
        else:
            averaged[key] = torch.stack([state[key] for state in states]).max(0).values
    return averaged


def _common_prefix(stage_lists: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    prefix = []
    for stages in zip(*stage_lists):  # compared as JSON: a stage read from a sidecar holds lists, not tuples
        if len({json.dumps(stage, sort_keys=True, default=list) for stage in stages}) > 1:
            break
        prefix.append(stages[0])
    return prefix


def write_average(sources: Sequence[str | Path], out: str | Path, shares: Sequence[float] | None = None) -> Path:
    """Average the models at ``sources`` (run checkpoints or shipped weights folders) into the run checkpoint
    ``out``. Its stages are the members' shared history, then one stage naming each member, its share and the
    stages it alone went through, so the sidecar of an exported average still says how it was made."""
    loaded = [load_init(source) for source in sources]
    state = average_states([state for state, _ in loaded], shares)
    stage_lists = [stages for _, stages in loaded]
    shared = _common_prefix(stage_lists)
    equal = [1 / len(sources)] * len(sources) if shares is None else [s / sum(shares) for s in shares]
    stage = {"stage": WEIGHT_AVERAGE,
             "members": [{"source": str(source), "share": round(share, 6), "stages": stages[len(shared):]}
                         for source, share, stages in zip(sources, equal, stage_lists)]}
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state, "stages": shared + [stage], "epoch": None, "val": None}, tmp)
    os.replace(tmp, path)
    return path
