"""Cascading model-parameter randomisation (Adebayo et al., "Sanity checks for saliency maps", 2018).

A heatmap that explains the model must change when the model's learned weights are replaced by random
ones. The cascade re-initialises the network from the top down, one group at a time (the head, then each
dense block with the layers that follow it), keeping the groups already randomised; at every stage the
method's map for the same image and class is compared with the trained model's map. A map that barely
changes shows the image (edges, intensity), not what the model learned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity


@dataclass(frozen=True)
class Stage:
    """One step of the cascade: its name and the modules (dotted names) it re-initialises."""

    name: str
    modules: tuple[str, ...]


def cascade_stages(model: torch.nn.Module) -> list[Stage]:
    """Top-down groups of a DenseNet (torchvision layout, any size): the classifier, then each dense block
    together with the layers between it and the block above (norm5 for the last, a transition otherwise).
    The stem (conv0, norm0) joins the first block, so the last stage leaves no learned weight."""
    stages = [Stage("head", ("classifier",))]
    group: list[str] = []
    children = [name for name, _ in model.features.named_children()]
    blocks = [name for name in children if name.startswith("denseblock")]
    for name in reversed(children):
        if any(True for _ in model.features.get_submodule(name).parameters()):  # pools and ReLUs hold no weights
            group.append(f"features.{name}")
        if name.startswith("denseblock") and name != blocks[0]:
            stages.append(Stage(f"dense block {name.removeprefix('denseblock')}", tuple(group)))
            group = []
    stages.append(Stage(f"dense block {blocks[0].removeprefix('denseblock')} and stem (all weights random)",
                        tuple(group)))
    return stages


def reinitialise(module: torch.nn.Module) -> None:
    """torchvision's DenseNet initialisation, in place: Kaiming-normal convolutions, BatchNorm scale 1 and
    shift 0 with its running statistics reset, default linear weights with zero bias."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
        elif isinstance(m, torch.nn.Linear):
            m.reset_parameters()
            torch.nn.init.zeros_(m.bias)
        elif m is not module and not list(m.children()) and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def cascade(model: torch.nn.Module, stages: list[Stage], seed: int = 0) -> list[tuple[str, torch.nn.Module]]:
    """One model per stage, each with that stage's modules and all those above re-initialised (seeded, so
    the same run gives the same random weights). The trained model is left untouched."""
    out = []
    current = copy.deepcopy(model).float().eval()
    for index, stage in enumerate(stages):
        current = copy.deepcopy(current)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + index)
            for name in stage.modules:
                reinitialise(current.get_submodule(name))
        out.append((stage.name, current.eval()))
    return out


def map_similarity(original: np.ndarray, randomised: np.ndarray) -> tuple[float, float]:
    """(Spearman rank correlation, SSIM) between two maps scaled to [0, 1].

    A constant original has no ranking to keep: both are NaN. A randomised map that collapsed to a
    constant while the original was not shares no ranking with it: correlation 0."""
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(randomised, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or np.ptp(a) == 0:
        return float("nan"), float("nan")
    ssim = float(structural_similarity(a, b, data_range=1.0))
    if np.ptp(b) == 0:
        return 0.0, ssim
    return float(spearmanr(a.ravel(), b.ravel()).statistic), ssim
