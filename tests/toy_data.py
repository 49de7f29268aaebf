"""A tiny collection in the layout of ../shared/cxr, built from the committed fixtures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import FIXTURES, fixture_rows

COLUMNS = ["file", "class", "split_group", "source_dataset", "set", "demo_shippable"]


def make_toy_collection(root: Path, variants: int = 8, seed: int = 0) -> Path:
    """Each fixture becomes ``variants`` shifted/zoomed copies, each its own patient; Hannover stays external."""
    rng = np.random.default_rng(seed)
    rows = []
    for fixture in fixture_rows():
        image = Image.open(FIXTURES / fixture["fixture"]).convert("L")
        external = fixture["source_dataset"].startswith("Hannover")
        for v in range(variants):
            box = rng.integers(0, 24, 4)
            copy = image.crop((box[0], box[1], 256 - box[2], 256 - box[3])).resize((256, 256))
            folder = "external/covid" if external and v % 2 == 0 else f"pool/{fixture['class']}"
            rel = f"{folder}/{v}_{fixture['fixture']}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            copy.save(root / rel)
            rows.append({"file": rel, "class": fixture["class"], "split_group": f"{fixture['fixture']}:{v}",
                         "source_dataset": fixture["source_dataset"], "demo_shippable": "yes",
                         "set": "external" if folder.startswith("external") else "pool"})
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root
