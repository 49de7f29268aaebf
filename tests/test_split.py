"""Patient-level split: no patient on two sides of a boundary, seeded, stratified, external excluded."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from covidviz.data.collection import Record, read_metadata
from covidviz.data.split import read_split, split_records, write_split
from tests.conftest import SHARED, WEIGHTS, requires_data


def _toy_records() -> list[Record]:
    records = []
    for p in range(300):
        label = ("covid", "pneumonia", "normal")[p % 3]
        source = ("A", "B")[p % 2]
        records += [Record(f"{label}/{p}_{i}.png", label, f"patient{p}", source, "pool", False) for i in range(1 + p % 4)]
    return records


def _assert_patient_level(splits: dict[str, list[Record]]) -> None:
    owner: dict[str, str] = {}
    for name, records in splits.items():
        for r in records:
            assert owner.setdefault(r.group, name) == name, f"{r.group} is in {owner[r.group]} and {name}"


def test_no_group_crosses_a_boundary_and_fractions_hold():
    records = _toy_records()
    splits = split_records(records, seed=7)
    _assert_patient_level(splits)
    assert sum(len(v) for v in splits.values()) == len(records)
    for name, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(len(splits[name]) / len(records) - share) < 0.05
        assert set(Counter(r.label for r in splits[name])) == {"covid", "pneumonia", "normal"}


def test_seeded_and_seed_sensitive():
    records = _toy_records()
    assert split_records(records, 1) == split_records(records, 1)
    assert split_records(records, 1)["test"] != split_records(records, 2)["test"]


def test_external_images_are_refused():
    records = _toy_records() + [Record("external/x.png", "covid", "h1", "Hannover", "external", True)]
    with pytest.raises(ValueError, match="evaluation-only"):
        split_records(records, 0)


def test_written_split_reads_back(tmp_path):
    splits = split_records(_toy_records(), 3)
    write_split(tmp_path / "split.csv", splits)
    assert read_split(tmp_path / "split.csv") == {k: [r.file for r in v] for k, v in splits.items()}


@requires_data
def test_shipped_split_is_patient_level_disjoint_from_external_and_agrees_with_the_pool():
    """What must hold for any version of the pool: the shipped split may predate rows that were added
    (they are simply not in it) or removed (skipped and counted), but every row it still shares with the
    pool carries the pool's class and patient group, no group sits in two splits, and nothing external
    (by file or by patient group) was ever in it."""
    metadata = {r.file: r for r in read_metadata(SHARED)}
    with (WEIGHTS / "split.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    present = [row for row in rows if row["file"] in metadata]
    gone = len(rows) - len(present)
    assert gone <= 0.01 * len(rows), f"{gone} of {len(rows)} shipped split rows are no longer in the pool"
    owner: dict[str, str] = {}
    for row in rows:
        assert owner.setdefault(row["split_group"], row["split"]) == row["split"], row["split_group"]
    for row in present:
        record = metadata[row["file"]]
        assert record.set == "pool", row["file"]
        assert (record.label, record.group) == (row["class"], row["split_group"]), row["file"]
    external = [r for r in metadata.values() if r.set == "external"]
    assert not {r.file for r in external} & {row["file"] for row in rows}
    assert not {r.group for r in external} & set(owner)
    print(f"shipped split: {len(present)} rows checked, {gone} no longer in the pool (skipped)")
