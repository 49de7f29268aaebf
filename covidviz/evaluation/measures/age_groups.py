"""Pneumonia recall for adults and for children, apart.

The pool's pneumonia class is mostly children (Kermany, aged 1 to 5), so one pneumonia recall mostly says how
well the model knows a child's chest. Adult pneumonia that is not COVID-19 is the distinction clinicians need,
and it hides inside the pooled figure: every place that shows pneumonia recall shows both groups beside it.
The age group comes from the source (the pool has no per-film age): Kermany is paediatric, every other source
holds adults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from covidviz import CLASSES

PAEDIATRIC_SOURCES = frozenset({"Kermany"})
GROUPS = ("adults", "children")
PNEUMONIA = CLASSES.index("pneumonia")


@dataclass(frozen=True)
class GroupRecall:
    """How many of one age group's pneumonia films were called pneumonia, with a Wilson 95% interval."""

    group: str
    sources: tuple[str, ...]
    recalled: int
    n: int

    @property
    def value(self) -> float:
        return self.recalled / self.n

    @property
    def ci95(self) -> tuple[float, float]:
        from scipy.stats import binomtest
        interval = binomtest(self.recalled, self.n).proportion_ci(confidence_level=0.95, method="wilson")
        return float(interval.low), float(interval.high)

    def describe(self) -> str:
        low, high = self.ci95
        return (f"{self.group} ({', '.join(self.sources)}) {self.recalled} of {self.n} "
                f"({self.value:.0%}, 95% CI {low:.0%}–{high:.0%})")

    def as_json(self) -> dict[str, object]:
        return {"sources": list(self.sources), "recalled": self.recalled, "n": self.n, "value": self.value,
                "ci95": list(self.ci95)}


def age_group(source: str) -> str:
    """``children`` for a paediatric source, else ``adults``."""
    return "children" if source in PAEDIATRIC_SOURCES else "adults"


def pneumonia_recall_by_age(sources: Sequence[str] | np.ndarray, y_true: np.ndarray, y_pred: np.ndarray
                            ) -> dict[str, GroupRecall]:
    """Pneumonia recall per age group, for the groups that hold pneumonia films (labels as class indices, by
    whichever decision rule the caller applies)."""
    sources, y_true, y_pred = np.asarray(sources, str), np.asarray(y_true), np.asarray(y_pred)
    if not len(sources) == len(y_true) == len(y_pred):
        raise ValueError(f"sources, true and predicted labels differ in length: {len(sources)}, {len(y_true)}, "
                         f"{len(y_pred)}")
    groups = np.array([age_group(s) for s in sources], str)
    out = {}
    for group in GROUPS:
        rows = (groups == group) & (y_true == PNEUMONIA)
        if rows.any():
            out[group] = GroupRecall(group, tuple(sorted(set(sources[rows]))), int((y_pred[rows] == PNEUMONIA).sum()),
                                     int(rows.sum()))
    return out


def recall_sentence(recalls: dict[str, GroupRecall]) -> str:
    """One line for a page or a card: both groups' pneumonia recall, or why there is none."""
    if not recalls:
        return "No pneumonia films here, so no pneumonia recall by age."
    return "Pneumonia recall by age group: " + "; ".join(r.describe() for r in recalls.values()) + "."
