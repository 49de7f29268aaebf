"""A training run's settings: folders, hyper-parameters, architecture, split and cross-validation fold."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from covidviz.model.network import ARCHITECTURE
from covidviz.training.recipes import Recipe


@dataclass
class TrainConfig:
    data_dir: str
    run_dir: str
    size: int = 128
    epochs: int = 30
    # the hyper-parameters' defaults are the recipe's (covidviz.training.recipes.Recipe): one place
    batch_size: int = Recipe.batch_size
    lr: float = Recipe.lr
    weight_decay: float = Recipe.weight_decay
    label_smoothing: float = Recipe.label_smoothing
    patience: int = 8
    seed: int = Recipe.seed
    split_seed: int = 42
    init: str | None = None
    export_dir: str | None = None
    limit: int | None = None  # images per split, for smoke tests
    threads: int | None = None
    fast: bool | None = None  # bf16 autocast; None: measured (only where the CPU has native bf16)
    stop_after: int | None = None  # end this process after that epoch, as an interruption would
    segmenter_dir: str | None = None  # a weights folder holding lungs/: train on lung fields
    previous_split: str | None = None  # keep this split.csv's group assignments, split only new groups
    radiologist_labels: bool = True  # NIH: the RSNA radiologists' reading where one exists
    epoch_images: int | None = None  # images sampled per epoch (default: the training set's size)
    source_power: float = 0.5  # within a class, source shares ~ count**power (0 = equal per source)
    adult_pneumonia: float | None = None  # share of pneumonia draws from adult sources (None: as source_power gives)
    acquisition: float = 0.0  # share of training images through one covidviz.data.acquisition transform
    consistency: float = 0.0  # weight of the agreement term between each film and its acquisition-shifted twin
    twin_transforms: tuple[str, ...] = ()  # the acquisition transforms the twins are drawn from (empty: all)
    outside_lungs: float = 0.0  # weight of the penalty on class evidence outside the lung mask
    arch: str = ARCHITECTURE  # one of covidviz.model.network.ARCHITECTURES
    fold: int | None = None  # cross-validation: test on this fold of the pool (0-based), train and validate on the rest
    folds: int = 5
    prepared_dir: str | None = None  # a folder shared by runs for the prepared-image cache (default: the run folder)
    recipe: str | None = None  # a name for this recipe, shown wherever its models are (e.g. "reduced CPU recipe")
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_recipe(cls, recipe: Recipe, **rest: Any) -> TrainConfig:
        """A config that trains by ``recipe`` (every hyper-parameter it names, early stopping off so every run
        gets the recipe's epochs); ``rest`` sets the other fields (folders, architecture, fold, ...)."""
        named = {f.name: getattr(recipe, f.name) for f in fields(recipe) if f.name != "name"}
        return cls(**named, patience=recipe.epochs, recipe=recipe.name, **rest)
