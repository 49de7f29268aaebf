"""How the model's answer moves when the acquisition changes, from ``weights/eval/shift_per_film.csv``.

The per-film file (written by :mod:`covidviz.evaluation.artifacts.shift_run`, which runs the model) holds, for
each sampled validation film and each transform of :mod:`covidviz.data.acquisition` (and the clean film), the class
by the model's decision rule, the OOD distance, whether the guard flags it and whether plausible lungs were found.
The summary (``shift.json``) is computed from that file alone, so a test and the model card recompute and read it
without the model. Today's model fills the "before" column of issue 20; a retraining with these transforms as
augmentations runs the same code for "after".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from covidviz import CLASSES
from covidviz.evaluation.artifacts.saved import eval_dir
from covidviz.evaluation.explanation_check.explanations import mean_ci

PER_FILM_FILE, SUMMARY_FILE = "shift_per_film.csv", "shift.json"
CLEAN = "clean"
COLUMNS = ("file", "true", "transform", "label", "ood_distance", "flagged", "lungs_plausible")


def shift_summary(per_film: pd.DataFrame) -> dict[str, Any]:
    """Per transform (the clean films first, for comparison): films, the share whose class by the decision rule
    differs from the clean film's (with a 95% bootstrap interval, and by true class), and the shares the OOD
    guard flags, without plausible lungs, and given no class (either check; counted apart from the flips: the
    class compared is the rule's even where the film would get none)."""
    clean = per_film[per_film["transform"] == CLEAN].set_index("file")
    out: dict[str, Any] = {}
    for name in dict.fromkeys(per_film["transform"]):
        rows = per_film[per_film["transform"] == name].set_index("file").loc[clean.index]
        flipped = (rows["label"] != clean["label"]).to_numpy()
        flagged = rows["flagged"].to_numpy(bool)
        no_lungs = ~rows["lungs_plausible"].to_numpy(bool)
        abstained = flagged | no_lungs
        true = clean["true"].to_numpy()
        out[name] = {
            "films": int(len(rows)),
            "flipped": int(flipped.sum()),
            "flip_rate": mean_ci(flipped.astype(float).tolist()),
            "flagged_ood": float(flagged.mean()),
            "no_plausible_lungs": float(no_lungs.mean()),
            "abstained": float(abstained.mean()),
            "flips_by_class": {c: {"films": int((true == c).sum()), "flipped": int(flipped[true == c].sum())}
                               for c in CLASSES if (true == c).any()},
        }
    return out


def read_per_film(weights_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(eval_dir(weights_dir) / PER_FILM_FILE, keep_default_na=False)


def summarise(weights_dir: str | Path, sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """``shift.json``'s content: the model, how the films were drawn (``sample``; else as the shipped
    ``shift.json`` records it) and :func:`shift_summary` of the per-film file."""
    from covidviz.verified import read_sidecar
    if sample is None:
        sample = (load_shift(weights_dir) or {}).get("sample", {})
    return {"weights_sha256": read_sidecar(weights_dir)["weights_sha256"], "sample": sample,
            "transforms": shift_summary(read_per_film(weights_dir))}


def write_summary(weights_dir: str | Path, sample: dict[str, Any] | None = None) -> Path:
    summary = summarise(weights_dir, sample)
    path = eval_dir(weights_dir) / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def load_shift(weights_dir: str | Path) -> dict[str, Any] | None:
    path = eval_dir(weights_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """One console line per transform."""
    return [f"  {name:21s} n={s['films']:4d} flipped {s['flipped']:4d} ({s['flip_rate']['mean']:.1%}) "
            f"OOD {s['flagged_ood']:.1%} no lungs {s['no_plausible_lungs']:.1%} no class {s['abstained']:.1%}"
            for name, s in summary["transforms"].items()]

