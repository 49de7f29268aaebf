"""One cache of prepared (canonical, uint8) images shared by many runs: cross-validation folds and comparison
models read the same films, and preparing 9,000 of them (lung segmenter, crop, stretch) takes minutes.

The store is one ``.npz`` (file names and images) keyed by the segmenter's sha256 in its name; images it lacks
are prepared through the one preprocessing path and added.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from covidviz.data.collection import Record, load_prepared


def read_store(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path) as blob:
        return dict(zip(blob["files"].tolist(), blob["images"]))


def write_store(path: Path, images: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(images)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, files=np.array(files), images=np.stack([images[f] for f in files]))
    os.replace(tmp, path)


def prepared_from_store(path: Path, data_dir: str | Path, records: list[Record], segmenter) -> np.ndarray:
    """uint8 prepared images of ``records`` in their order, preparing (and storing) the ones missing."""
    store = read_store(path)
    missing = [r for r in records if r.file not in store]
    if missing:
        prepared = load_prepared(data_dir, missing, segmenter, dtype=np.uint8)
        store.update(zip((r.file for r in missing), prepared.images))
        write_store(path, store)
        print(f"{path.name}: {len(missing)} images prepared and stored ({len(store)} in all)", flush=True)
    return np.stack([store[r.file] for r in records])
