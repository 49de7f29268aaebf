"""The training data: the pool's split (labels as the config says) and the prepared images, cached in the run
folder keyed by the lung segmenter's sha256 (preparing 9,000 films takes minutes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from covidviz.data.collection import Record, load_prepared, radiologist_labels, read_metadata
from covidviz.data.split import crossval_split, extend_split, read_split_groups, split_records
from covidviz.training.config import TrainConfig

if TYPE_CHECKING:
    from covidviz.lungs.segmenter import LungSegmenter


def make_splits(cfg: TrainConfig) -> dict[str, list[Record]]:
    """The pool's patient-level split (labels as the config says), extending a previous split if given."""
    pool = [r for r in read_metadata(cfg.data_dir) if r.set == "pool"]
    if cfg.radiologist_labels:
        pool = radiologist_labels(pool)
    if cfg.fold is not None:
        return crossval_split(pool, cfg.folds, cfg.fold, cfg.split_seed)
    if cfg.previous_split:
        return extend_split(pool, read_split_groups(cfg.previous_split), cfg.split_seed)
    return split_records(pool, cfg.split_seed)


def training_segmenter(cfg: TrainConfig) -> LungSegmenter | None:
    """The lung segmenter the config trains with (channels-last for speed), or None for whole images."""
    if not cfg.segmenter_dir:
        return None
    from covidviz.lungs.segmenter import load_segmenter
    segmenter = load_segmenter(cfg.segmenter_dir)
    segmenter.model.to(memory_format=torch.channels_last)
    return segmenter


@dataclass(frozen=True)
class PreparedFields:
    """A split's prepared images (N x 256 x 256 uint8) and, with a segmenter, their lung masks packed along the
    last axis (``np.packbits``; all zero where the lungs were not found), for the outside-the-lungs penalty."""

    images: np.ndarray
    lungs_packed: np.ndarray | None


def prepared_fields(cfg: TrainConfig, run: Path, name: str, records: list[Record],
                    segmenter: LungSegmenter | None) -> PreparedFields:
    """Prepared images and lung masks, cached per split and segmenter (preparing 9,000 films takes minutes). The
    shared store (``cfg.prepared_dir``) keeps images only."""
    key = segmenter.sha256[:12] if segmenter is not None else "whole-image"
    if cfg.prepared_dir:
        from covidviz.training.prepared_store import prepared_from_store
        return PreparedFields(prepared_from_store(Path(cfg.prepared_dir) / f"prepared-{key}.npz", cfg.data_dir,
                                                  records, segmenter), None)
    cache = run / f"prepared-{name}-{key}.npz"
    files = np.array([r.file for r in records])
    if cache.exists():
        with np.load(cache) as blob:
            if np.array_equal(blob["files"], files) and ("lungs" in blob or segmenter is None):
                return PreparedFields(blob["images"], blob["lungs"] if segmenter is not None else None)
    prepared = load_prepared(cfg.data_dir, records, segmenter, dtype=np.uint8)
    lungs = np.packbits(prepared.lungs & prepared.lungs_found[:, None, None], axis=-1)
    np.savez(run / f"prepared-{name}.tmp.npz", images=prepared.images, lungs=lungs, files=files)
    os.replace(run / f"prepared-{name}.tmp.npz", cache)
    print(f"{name}: {len(records)} images prepared; lung field found for {prepared.lung_field.mean():.1%}",
          flush=True)
    return PreparedFields(prepared.images, lungs if segmenter is not None else None)


def prepared_images(cfg: TrainConfig, run: Path, name: str, records: list[Record],
                    segmenter: LungSegmenter | None) -> np.ndarray:
    """uint8 prepared images, as :func:`prepared_fields`."""
    return prepared_fields(cfg, run, name, records, segmenter).images
