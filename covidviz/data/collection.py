"""The chest X-ray collection in ``../shared/cxr``: metadata rows and canonical image arrays."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidviz import CLASSES
from covidviz.io.loading import load_xray_file
from covidviz.model.preprocessing import CANONICAL_SIZE, canonical_image

from covidviz.paths import DEFAULT_DATA_DIR  # noqa: E402,F401  (re-exported)

_SOURCE_NAMES = (  # substring of metadata's source_dataset -> short name used in reports
    ("NIH", "NIH"), ("Kermany", "Kermany"), ("ieee8023", "ieee8023"), ("COVID-CXNet", "COVID-CXNet"),
    ("Radiopaedia", "scrape"), ("Hannover", "Hannover"),
)


@dataclass(frozen=True)
class Record:
    """One image of the collection; ``file`` is relative to the data folder."""

    file: str
    label: str
    group: str
    source: str
    set: str
    shippable: bool

    @property
    def target(self) -> int:
        return CLASSES.index(self.label)


def short_source(source_dataset: str) -> str:
    for needle, name in _SOURCE_NAMES:
        if needle in source_dataset:
            return name
    return source_dataset or "unknown"


def read_metadata(data_dir: str | Path) -> list[Record]:
    """All rows of ``metadata.csv`` as :class:`Record`, in file order."""
    path = Path(data_dir) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: point --data at the folder holding metadata.csv")
    with path.open(newline="") as handle:
        return [Record(file=row["file"], label=row["class"], group=row["split_group"],
                       source=short_source(row["source_dataset"]), set=row["set"],
                       shippable=row["demo_shippable"] == "yes")
                for row in csv.DictReader(handle)]


def load_canonical(data_dir: str | Path, records: list[Record], progress: bool = True) -> np.ndarray:
    """N x 256 x 256 float32 canonical images, through the same loader and preprocessing as uploads
    (float32, not a smaller type, so evaluation sees exactly what an upload of the same file gives)."""
    out = np.empty((len(records), CANONICAL_SIZE, CANONICAL_SIZE), dtype=np.float32)
    iterator = records
    if progress:
        from tqdm import tqdm
        iterator = tqdm(records, desc="loading images", unit="img", leave=False)
    for i, record in enumerate(iterator):
        out[i] = canonical_image(load_xray_file(Path(data_dir) / record.file).pixels)
    return out
