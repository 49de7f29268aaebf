"""Exporting a run's best checkpoint as shipped weights: safetensors, the sidecar that says how the model was
made (recipe, stages, history, data counts, lung segmenter), and the split."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import torch

from covidviz import CLASSES
from covidviz.data.collection import Record
from covidviz.data.split import write_split
from covidviz.model.network import architecture, build_model
from covidviz.model.weights import save_weights
from covidviz.paths import ROOT
from covidviz.training.config import TrainConfig
from covidviz.training.prepare import make_splits, training_segmenter


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=ROOT, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export(best: Path, cfg: TrainConfig, splits: dict[str, list[Record]]) -> Path:
    """Write the best checkpoint to ``cfg.export_dir`` as safetensors + sidecar (with the per-epoch
    history and the lung segmenter it was trained with), and the split."""
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    last = Path(best).with_name("last.pt")
    history = json.loads(torch.load(last, map_location="cpu", weights_only=True)["progress"])["history"] \
        if last.exists() else []
    model = build_model(len(CLASSES), cfg.arch)
    model.load_state_dict(ckpt["model"])
    out = Path(cfg.export_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / "split.csv", splits)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for name, records in splits.items():
        for r in records:
            per_source = counts.setdefault(name, {}).setdefault(r.label, {})
            per_source[r.source] = per_source.get(r.source, 0) + 1
    segmenter = training_segmenter(cfg)
    canonical = ("lung field: the lung segmenter's mask on the whole image, the box around both lungs widened by "
                 "8% per side, cut from the original and resized to 256 x 256 (falls back to the whole-image form "
                 "when no plausible pair of lungs is found); 0.5-99.5 percentile stretch"
                 if segmenter is not None else
                 "grayscale [0,1]; uniform borders trimmed; shorter side to 256, centre crop; 0.5-99.5 percentile "
                 "stretch")
    preprocessing = {"canonical": canonical, "model_input": f"bilinear antialiased resize to {cfg.size}; per-image "
                     "standardisation; gray replicated to 3 channels"}
    if segmenter is not None:
        preprocessing["lung_segmenter_sha256"] = segmenter.sha256
        source = Path(cfg.segmenter_dir) / "lungs"
        if source.resolve() != (out / "lungs").resolve():
            shutil.copytree(source, out / "lungs", dirs_exist_ok=True)
    random_init = not ckpt["stages"] or ckpt["stages"][0].get("stage") != "external initialisation"
    sidecar = {
        "name": f"covidviz {architecture(cfg.arch).title}",
        "recipe": cfg.recipe or "shipped recipe",
        "cross_validation": {"fold": cfg.fold, "folds": cfg.folds, "seed": cfg.split_seed}
                            if cfg.fold is not None else None,
        "input_size": cfg.size,
        "preprocessing": preprocessing,
        "initialisation": "random (no pretrained weights)" if random_init else ckpt["stages"][0]["checkpoint"],
        "training": {"stages": ckpt["stages"], "best_epoch": ckpt["epoch"], "validation": ckpt["val"],
                     "history": history,
                     "sampling": f"class-balanced; within a class, sources weighted by count^{cfg.source_power:g}"
                                 + (f"; adult sources {cfg.adult_pneumonia:.0%} of the pneumonia draws"
                                    if cfg.adult_pneumonia is not None else "")
                                 + (f"; {cfg.epoch_images} images per epoch" if cfg.epoch_images else ""),
                     "augmentation": "rotation +-10 deg, zoom 0.85-1.2, independent horizontal/vertical stretch "
                                     "0.85-1.18, shift +-6%, gamma 0.7-1.5, contrast, brightness, blur, noise, "
                                     "cut-out; no flips"
                                     + (f"; acquisition transforms on {cfg.acquisition:.0%} of images (grain, vendor "
                                        "curves, edge enhancement, low resolution and JPEG, collimation and text, "
                                        "digitised film; strength 0.25-1.0)" if cfg.acquisition else ""),
                     "precision": "bf16 autocast" if cfg.fast else "fp32",
                     "notes": cfg.notes},
        "data": {"counts": counts, "split_seed": cfg.split_seed, "split_file": "split.csv",
                 "labels": "NIH: RSNA radiologists' reading where one exists (Normal -> normal, Lung Opacity -> "
                           "pneumonia, other abnormality dropped), else NIH's report-mined label"
                           if cfg.radiologist_labels else "as in metadata.csv",
                 "previous_split_kept": bool(cfg.previous_split),
                 "external_used_for_training": False},
        "code_commit": _git_commit(),
        "temperature": 1.0,
    }
    return save_weights(model, out, sidecar)


def export_checkpoint(cfg: TrainConfig) -> Path:
    """Export ``<run>/best.pt`` as it stands, without training: a checkpoint that another step wrote (a weight
    average, a head refit) has no epochs to resume, so ``train --resume`` would start a new run instead.
    The flags describe the runs that trained it (sampling, augmentation, precision, split), as for ``train``."""
    if not cfg.export_dir:
        raise ValueError("exporting a checkpoint needs a folder to write: --export weights")
    best = Path(cfg.run_dir).expanduser() / "best.pt"
    if not best.is_file():
        raise ValueError(f"there is no {best} to export: name the run folder that holds it with --run")
    stages = torch.load(best, map_location="cpu", weights_only=True)["stages"]
    if stages:
        cfg.notes.append(f"exported as its last stage ({stages[-1]['stage']}) wrote it, without training; sampling, "
                         "augmentation and precision describe the runs that trained its features")
    return export(best, cfg, make_splits(cfg))
