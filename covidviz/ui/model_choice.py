"""Which models Diagnose can switch between: the shipped one, and every comparison model whose weights are
present (``weights/comparison/<name>/``, committed when small). Read from sidecars only, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from covidviz.errors import WeightsError
from covidviz.paths import COMPARISON_DIR
from covidviz.verified import WEIGHTS_FILE, read_sidecar


@dataclass(frozen=True)
class ModelChoice:
    label: str
    folder: Path
    note: str = ""


def available_models(weights: Path) -> list[ModelChoice]:
    """The shipped model first (the default), then the comparison models with weights, by name. A shipped
    model without a readable sidecar is still listed: loading it is where the page says what is wrong."""
    try:
        name = read_sidecar(weights).get("name", "covidviz model")
    except WeightsError:
        name = "covidviz model"
    shipped = ModelChoice(f"{name} (shipped)", weights)
    out = [shipped]
    root = weights / COMPARISON_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not ((folder / WEIGHTS_FILE).is_file() and (folder / "model.json").is_file()):
            continue
        try:
            sidecar = read_sidecar(folder)
        except (OSError, ValueError):
            continue  # a broken folder is not offered; the shipped model stays available
        recipe = sidecar.get("recipe", "another recipe")
        guard = ("It has an out-of-distribution guard of its own, fitted on its validation films."
                 if "ood" in sidecar and (folder / sidecar["ood"].get("file", "")).is_file() else
                 "It has no out-of-distribution guard of its own: only the lung check warns about films unlike its "
                 "training set.")
        out.append(ModelChoice(
            f"{sidecar.get('name', folder.name)} (comparison)", folder,
            f"A comparison model trained on the {recipe} (see Model comparison for how it measures against the "
            f"shipped model). {guard}"))
    return out
