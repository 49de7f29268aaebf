"""Patient-level split: no patient on two sides of a boundary, seeded, stratified, external excluded."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from covidviz.data.collection import Record, radiologist_labels, read_metadata
from covidviz.data.split import (
    crossval_folds,
    crossval_split,
    extend_split,
    read_split,
    read_split_groups,
    split_records,
    write_split,
)
from tests.conftest import SHARED, WEIGHTS, requires_data

SPLIT_NAMES = ("train", "val", "test")


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


def test_extending_a_split_keeps_every_earlier_patient_in_place(tmp_path):
    records = _toy_records()
    earlier = [r for r in records if int(r.group.removeprefix("patient")) < 200]
    write_split(tmp_path / "old.csv", split_records(earlier, seed=1))
    previous = read_split_groups(tmp_path / "old.csv")
    extended = extend_split(records, previous, seed=2)
    _assert_patient_level(extended)
    for name, members in extended.items():
        for r in members:
            assert previous.get(r.group, name) == name, r.group
    new_counts = Counter(name for name, members in extended.items() for r in members if r.group not in previous)
    total = sum(new_counts.values())
    assert 0.6 < new_counts["train"] / total < 0.8 and new_counts["test"] > 0.1 * total


def test_radiologist_reading_replaces_report_mined_labels():
    def nih(label: str, rsna: str) -> Record:
        return Record(f"{label}-{rsna}", label, "g", "NIH", "pool", True, rsna_label=rsna)
    records = [nih("pneumonia", "Normal"), nih("normal", "Lung Opacity"), nih("pneumonia", ""),
               nih("normal", "No Lung Opacity / Not Normal"), nih("normal", "Normal")]
    assert [(r.file, r.label) for r in radiologist_labels(records)] == [
        ("pneumonia-Normal", "normal"), ("normal-Lung Opacity", "pneumonia"), ("pneumonia-", "pneumonia"),
        ("normal-Normal", "normal")]


@requires_data
def test_shipped_split_is_patient_level_disjoint_from_external_and_agrees_with_the_pool():
    """What must hold for any version of the pool: the shipped split may predate rows that were added
    (they are simply not in it) or removed (skipped and counted), but every row it still shares with the
    pool carries the pool's class and patient group, no group sits in two splits, and nothing external
    (by file or by patient group) was ever in it."""
    from covidviz.verified import read_sidecar
    records = read_metadata(SHARED)
    if read_sidecar(WEIGHTS).get("data", {}).get("labels", "").startswith("NIH: RSNA"):
        records = radiologist_labels(records)  # the labels the model was trained on
    metadata = {r.file: r for r in records}
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


def test_crossval_folds_are_patient_level_stratified_and_cover_the_pool():
    records = _toy_records()
    folds = crossval_folds(records, 5, seed=1)
    assert set(folds) == {r.group for r in records} and set(folds.values()) == set(range(5))
    held_out = []
    for k in range(5):
        splits = crossval_split(records, 5, k, seed=1)
        _assert_patient_level(splits)
        assert {folds[r.group] for r in splits["test"]} == {k}
        assert all(folds[r.group] != k for name in ("train", "val") for r in splits[name])
        assert sum(len(v) for v in splits.values()) == len(records)
        for name in SPLIT_NAMES:
            assert {r.label for r in splits[name]} == {"covid", "pneumonia", "normal"}, (k, name)
        assert 0.1 < len(splits["val"]) / (len(splits["train"]) + len(splits["val"])) < 0.2
        held_out += [r.file for r in splits["test"]]
    assert sorted(held_out) == sorted(r.file for r in records)  # every image is tested exactly once
    sizes = Counter(folds[r.group] for r in records)
    assert max(sizes.values()) - min(sizes.values()) < 0.1 * len(records) / 5
    assert crossval_folds(records, 5, seed=1) == folds and crossval_folds(records, 5, seed=2) != folds


def test_crossval_refuses_bad_folds_and_external_images():
    records = _toy_records()
    with pytest.raises(ValueError, match="fold 5 is not among 0..4"):
        crossval_split(records, 5, 5, seed=1)
    with pytest.raises(ValueError, match="at least 2 folds"):
        crossval_folds(records, 1, seed=1)
    outside = [Record("x.png", "covid", "g", "A", "external", False)]
    with pytest.raises(ValueError, match="evaluation-only"):
        crossval_folds(records + outside, 5, seed=1)
