"""Named training recipes. The comparison backbones and the cross-validation folds all use one recipe, so
their differences come from the architecture (or the fold), not from how long or how each was trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    name: str
    size: int
    epochs: int
    epoch_images: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    seed: int = 42

    @property
    def description(self) -> str:
        return (f"{self.size} px lung fields, {self.epochs} epochs of {self.epoch_images:,} class-balanced "
                f"images, AdamW one-cycle (peak lr {self.lr:g}), batch {self.batch_size}, label smoothing "
                f"{self.label_smoothing:g}, random initialisation; the checkpoint with the best validation macro-F1, "
                f"temperature fitted on validation")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description}


# Sized for this 2-core CPU (about 30 images/s for DenseNet-121 at 128 px with bf16): each model sees 12,000
# images, a fifth of what the shipped model saw over its three stages. Run on a GPU, raise epochs and size.
REDUCED_CPU = Recipe(name="reduced CPU recipe", size=128, epochs=6, epoch_images=2000)
