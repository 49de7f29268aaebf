"""Patient-level, stratified, seeded split of the pool into train / val / test.

Every image of one ``split_group`` (a patient, or an image where the source names no patient)
lands in the same split, so no patient is on both sides of a boundary. Groups are stratified
by class and source, so each split sees every (class, source) mix in proportion.
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from covidviz.data.collection import Record

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def split_groups(records: list[Record], seed: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
                 ) -> dict[str, str]:
    """Map each ``split_group`` to "train", "val" or "test"."""
    by_group: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_group[record.group].append(record)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for group, members in sorted(by_group.items()):
        label, source = Counter((m.label, m.source) for m in members).most_common(1)[0][0]
        strata[(label, source)].append(group)
    rng = random.Random(seed)
    assignment: dict[str, str] = {}
    for key in sorted(strata):
        groups = strata[key]
        rng.shuffle(groups)
        sizes = [len(by_group[g]) for g in groups]
        total, running = sum(sizes), 0
        for group, size in zip(groups, sizes):
            position = (running + size / 2) / total  # image-weighted position of this group
            running += size
            assignment[group] = "train" if position < fractions[0] else (
                "val" if position < fractions[0] + fractions[1] else "test")
    return assignment


def split_records(records: list[Record], seed: int) -> dict[str, list[Record]]:
    """Pool records per split (external-set records are refused: they are for evaluation only)."""
    return extend_split(records, {}, seed)


def extend_split(records: list[Record], previous: dict[str, str], seed: int) -> dict[str, list[Record]]:
    """Like :func:`split_records`, but every group a previous split assigned keeps its place; only new
    groups are split (stratified as usual). A model fine-tuned from the previous one then never meets
    its old validation or test patients in training, and both models are compared on the same test rows."""
    if any(r.set != "pool" for r in records):
        raise ValueError("only pool images may be split; the external set is evaluation-only")
    unknown = sorted(set(previous.values()) - set(SPLITS))
    if unknown:
        raise ValueError(f"previous split names {unknown} are not among {SPLITS}")
    assignment = dict(previous)
    assignment.update(split_groups([r for r in records if r.group not in previous], seed))
    out: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for record in records:
        out[assignment[record.group]].append(record)
    return out


def read_split_groups(path: str | Path) -> dict[str, str]:
    """``split_group`` to split name, as written by :func:`write_split`."""
    with Path(path).open(newline="") as handle:
        return {row["split_group"]: row["split"] for row in csv.DictReader(handle)}


def write_split(path: str | Path, splits: dict[str, list[Record]]) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split_group", "class", "source", "split"])
        for name in SPLITS:
            for r in splits.get(name, []):
                writer.writerow([r.file, r.group, r.label, r.source, name])


def read_split(path: str | Path) -> dict[str, list[str]]:
    """Files per split, as written by :func:`write_split`."""
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            out[row["split"]].append(row["file"])
    return out


def crossval_folds(records: list[Record], folds: int, seed: int) -> dict[str, int]:
    """Map each ``split_group`` to one of ``folds`` folds: scikit-learn's ``StratifiedGroupKFold`` over the
    groups, stratified by (class, source) as the train/val/test split is, so no patient straddles two folds."""
    from sklearn.model_selection import StratifiedGroupKFold
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {folds}")
    if any(r.set != "pool" for r in records):
        raise ValueError("only pool images may be split; the external set is evaluation-only")
    strata = [f"{r.label}|{r.source}" for r in records]
    groups = [r.group for r in records]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out: dict[str, int] = {}
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(records)), strata, groups)):
        out.update({groups[i]: k for i in held_out})
    return out


def crossval_split(records: list[Record], folds: int, fold: int, seed: int) -> dict[str, list[Record]]:
    """Fold ``fold`` of :func:`crossval_folds` as "test"; the other folds split by patient into "train" and
    "val" (85/15, stratified as usual), the validation part choosing the epoch and the temperature."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not among 0..{folds - 1}")
    assignment = crossval_folds(records, folds, seed)
    rest = [r for r in records if assignment[r.group] != fold]
    inner = split_groups(rest, seed, fractions=(0.85, 0.15, 0.0))
    out: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for record in records:
        out["test" if assignment[record.group] == fold else inner[record.group]].append(record)
    return out
