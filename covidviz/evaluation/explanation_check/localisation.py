"""Localisation against radiologists: do a heatmap's peak and energy fall on the lung opacities that the RSNA
radiologists boxed (``boxes.csv`` in the collection)?

Pure functions, no model and no files beyond the box table. The model reads a lung-field crop, so its maps live
in the crop's frame; the boxes are drawn on the whole (256 x 256) film. :func:`boxes_in_crop` carries each box
into the crop's frame with the :class:`~covidviz.model.preprocessing.CropBox` that preprocessing records, and
every measure is then read on the 256 x 256 canonical grid the lung mask lives on, as the lung-energy measure is.
Per film:

- **pointing game**: is the map's peak (its highest pixel on that grid) inside a box;
- **box energy**: the share of the map's energy inside the boxes (:func:`~covidviz.lungs.field.lung_energy` with
  the boxes as the mask);
- **even-lung baseline**: the same share for a map spread evenly over the segmented lungs, i.e. the share of the
  lungs the boxes cover. A map that knows nothing about the opacity but stays on the lungs scores this; it is
  also the chance that a peak dropped at random on the lungs lands in a box.

A box is not a segmentation: it also covers normal lung, so neither share can reach 1 for a good map.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidviz.evaluation.measures.report import bootstrap
from covidviz.lungs.field import lung_energy, map_on_grid
from covidviz.model.preprocessing import CANONICAL_SIZE, CropBox

BOXES_FILE = "boxes.csv"
GROUPS: dict[str, tuple[str, ...]] = {"trained": ("train",), "unseen": ("val", "test"), "all": ("train", "val", "test")}
GROUP_TITLES = {"trained": "films the model trained on", "unseen": "films it never saw (val, test)",
                "all": "all films"}


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: top-left corner (x to the right, y down), width and height, in pixels."""

    x: float
    y: float
    width: float
    height: float


def read_boxes(path: str | Path) -> dict[str, list[Box]]:
    """``boxes.csv``: collection-relative file -> its radiologists' boxes (several per film possible), in the
    film's own 256 x 256 pixel coordinates. Only the geometry is read; no identifier leaves the table."""
    out: dict[str, list[Box]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            out.setdefault(row["file"], []).append(
                Box(float(row["x"]), float(row["y"]), float(row["width"]), float(row["height"])))
    return out


def box_in_crop(box: Box, crop: CropBox, size: int = CANONICAL_SIZE) -> Box:
    """A box on the original image in the frame of the ``size`` x ``size`` image that preprocessing cut from
    ``crop`` and resized (possibly stretched: height and width scale separately). Parts outside the crop stay
    outside the frame (negative or beyond ``size``); :func:`box_mask` clips them."""
    sx, sy = size / crop.width, size / crop.height
    return Box((box.x - crop.left) * sx, (box.y - crop.top) * sy, box.width * sx, box.height * sy)


def box_mask(boxes: Sequence[Box], crop: CropBox, size: int = CANONICAL_SIZE) -> np.ndarray:
    """size x size boolean mask of the pixels whose centres lie inside any of ``boxes`` (original coordinates)
    once carried into the crop's frame: the same pixel-centre convention as the lung mask's resampling."""
    centres = np.arange(size) + 0.5
    mask = np.zeros((size, size), dtype=bool)
    for box in boxes:
        b = box_in_crop(box, crop, size)
        rows = (centres >= b.y) & (centres < b.y + b.height)
        cols = (centres >= b.x) & (centres < b.x + b.width)
        mask |= rows[:, None] & cols[None, :]
    return mask


def peak_in_mask(cam: np.ndarray, mask: np.ndarray) -> bool | None:
    """The pointing game: whether the map's highest pixel, on the mask's grid, is inside the mask (the first
    in row order on a tie). None for a flat map, which points nowhere."""
    on_grid = map_on_grid(cam, np.shape(mask))
    if not np.isfinite(on_grid).all() or np.ptp(on_grid) == 0:
        return None
    return bool(np.asarray(mask, dtype=bool).ravel()[int(np.argmax(on_grid))])


def even_lung_share(lungs: np.ndarray, mask: np.ndarray) -> float:
    """The share of a map spread evenly over ``lungs`` that falls inside ``mask``: the baseline for box energy."""
    return lung_energy(np.asarray(lungs, dtype=np.float32), mask)


def film_measures(cam: np.ndarray, boxes: np.ndarray) -> dict[str, Any]:
    """One map on one film: the pointing game and its energy share inside the boxes (None where undefined)."""
    energy = lung_energy(cam, boxes)
    return {"peak_in_box": peak_in_mask(cam, boxes), "box_energy": float(energy) if np.isfinite(energy) else None}


def _stat(fn, values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size else float("nan")


def _statistics(hits: np.ndarray, shares: np.ndarray) -> dict[str, dict[str, float]]:
    energy, even = shares[:, 0], shares[:, 1]
    return {"m": {"pointing": _stat(np.mean, hits), "box_energy_median": _stat(np.median, energy),
                  "even_lung_median": _stat(np.median, even),
                  "difference_median": _stat(np.median, energy - even),
                  "above_even_share": _stat(np.mean, np.where(np.isfinite(energy - even), energy > even, np.nan))}}


def summarise_group(hits: Sequence[bool | None], energy: Sequence[float | None], even: Sequence[float | None],
                    n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """One method on one group of films: the pointing rate, the median box energy, the median even-lung share,
    the median per-film difference (energy - even) and the share of films above their even-lung share, each
    with a 95% percentile-bootstrap interval over films (every statistic on the same resamples, so the
    difference is paired). Films where a value is undefined are left out of that statistic."""
    def arr(values: Sequence[Any]) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    h, shares = arr(hits), np.column_stack([arr(energy), arr(even)]) if len(hits) else np.zeros((0, 2))
    if len(h) == 0:
        values: dict[str, Any] = {name: {"value": None, "ci95": [None, None]}
                                  for name in _statistics(np.zeros(1), np.zeros((1, 2)))["m"]}
    else:
        values = bootstrap(_statistics, h, shares, n_boot, seed)["m"]
    return {"n_films": len(h), "n_pointing": int(np.isfinite(h).sum()), "n_pointed_inside": int(np.nansum(h)),
            **values}


def summarise_localisation(films: Sequence[dict[str, Any]], methods: Sequence[str], n_boot: int = 1000,
                           seed: int = 0) -> dict[str, Any]:
    """Per method and group of films (trained on, never seen, all): :func:`summarise_group` over the films that
    have a record for the method. ``films`` are the artifact's per-film rows: ``split``, ``even_lung`` and
    ``maps`` (method -> :func:`film_measures`)."""
    out: dict[str, Any] = {}
    for method in methods:
        out[method] = {}
        for group, splits in GROUPS.items():
            rows = [f for f in films if f["split"] in splits and method in f["maps"]]
            out[method][group] = summarise_group([f["maps"][method]["peak_in_box"] for f in rows],
                                                 [f["maps"][method]["box_energy"] for f in rows],
                                                 [f["even_lung"] for f in rows], n_boot, seed)
    return out
