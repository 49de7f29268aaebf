"""The chest X-ray collection in ``../shared/cxr``: metadata rows and prepared image arrays."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from covidviz import CLASSES
from covidviz.io.loading import load_xray_file
from covidviz.model.preprocessing import CANONICAL_SIZE, LungProbabilities, prepare

_SOURCE_NAMES = (  # substring of metadata's source_dataset -> short name used in reports
    ("NIH", "NIH"), ("Kermany", "Kermany"), ("ieee8023", "ieee8023"), ("COVID-CXNet", "COVID-CXNet"),
    ("Radiopaedia", "scrape"), ("Hannover", "Hannover"), ("SIIM", "SIIM"), ("Montgomery", "Montgomery"),
    ("DA/DB", "DA/DB"), ("Shenzhen", "Shenzhen"),
)
# NIH labels were mined from report text; where radiologists re-read the film for the RSNA Pneumonia
# Detection Challenge, their reading decides. "Not normal, no opacity" fits neither class: dropped.
RSNA_TO_CLASS = {"Normal": "normal", "Lung Opacity": "pneumonia", "No Lung Opacity / Not Normal": None}


@dataclass(frozen=True)
class Record:
    """One image of the collection; ``file`` is relative to the data folder."""

    file: str
    label: str
    group: str
    source: str
    set: str
    shippable: bool
    rsna_label: str = ""

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
                       shippable=row["demo_shippable"] == "yes", rsna_label=row.get("rsna_label", ""))
                for row in csv.DictReader(handle)]


def radiologist_labels(records: list[Record]) -> list[Record]:
    """Records with the RSNA radiologists' reading in place of NIH's report-mined label where one exists;
    films read as abnormal without opacity are left out (neither normal nor pneumonia).

    Why: of the 321 re-read NIH films, the report-mined label agrees with the radiologists on 138 (43%);
    55 films mined as pneumonia were read as normal."""
    out = []
    for r in records:
        if not r.rsna_label:
            out.append(r)
            continue
        label = RSNA_TO_CLASS[r.rsna_label]
        if label is not None:
            out.append(replace(r, label=label))
    return out


@dataclass(frozen=True)
class PreparedSet:
    """What the model reads for many records: images (N x 256 x 256 in [0, 1]), lung masks over them,
    and whether each image's lungs were found (False: the whole-image fallback was used)."""

    images: np.ndarray
    lungs: np.ndarray
    lung_field: np.ndarray
    lungs_found: np.ndarray
    lungs_plausible: np.ndarray  # the lungs were found with the confidence real films get (else: no class)


def load_prepared(data_dir: str | Path, records: list[Record], segmenter: LungProbabilities | None,
                  batch_size: int = 32, progress: bool = True, dtype: type = np.float32, crop: bool = True
                  ) -> PreparedSet:
    """Records through the upload loader and :func:`~covidviz.model.preprocessing.prepare`, in batches.

    ``dtype=np.uint8`` keeps a training set four times smaller (values rounded to 1/255); ``crop=False``
    keeps whole images but outlines their lungs (to measure a whole-image model)."""
    n = len(records)
    images = np.empty((n, CANONICAL_SIZE, CANONICAL_SIZE), dtype=dtype)
    lungs = np.zeros((n, CANONICAL_SIZE, CANONICAL_SIZE), dtype=bool)
    field = np.zeros(n, dtype=bool)
    found = np.zeros(n, dtype=bool)
    plausible = np.zeros(n, dtype=bool)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="preparing images", unit="batch", leave=False)
    for start in starts:
        chunk = records[start:start + batch_size]
        grays = [load_xray_file(Path(data_dir) / r.file).pixels for r in chunk]
        for i, item in enumerate(prepare(grays, segmenter, crop), start):
            images[i] = np.round(item.image * 255) if dtype == np.uint8 else item.image
            if item.lungs is not None:
                lungs[i] = item.lungs
            field[i], found[i], plausible[i] = item.lung_field, item.lungs_found, item.lungs_plausible
    return PreparedSet(images, lungs, field, found, plausible)
