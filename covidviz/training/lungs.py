"""Training the lung segmenter on ``lungs/`` (hand-drawn or curated masks), from random initialisation.

Masks are split by patient group (through ``metadata.csv`` where the film is also a pool or external
image) into train / validation / held-out test; the checkpoint is chosen by validation Dice and the
test Dice and IoU are reported once, at export. Resumable: ``<run>/last.pt`` after every epoch.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from covidviz.data.collection import Record, read_metadata
from covidviz.data.split import split_records
from covidviz.lungs.network import ARCHITECTURE, INPUT_SIZE, build_segmenter, segmenter_square, standardise
from covidviz.lungs.segmenter import LUNGS_SUBDIR, LungSegmenter, keep_largest_two
from covidviz.training.augment import random_acquisition, random_photometric, random_theta, warp
from covidviz.training.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class LungTrainConfig:
    data_dir: str
    run_dir: str
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 7
    threads: int | None = None
    limit: int | None = None
    export_dir: str | None = None
    acquisition: float = 0.0  # share of training images through one covidviz.data.acquisition transform


def lung_records(data_dir: str | Path) -> list[Record]:
    """One record per mask; the group is the film's patient where the film is also in ``metadata.csv``."""
    groups = {r.file: r.group for r in read_metadata(data_dir)}
    with (Path(data_dir) / "lungs" / "lungs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["mask"] != _mask_path(row["image"]):
            raise ValueError(f"lungs.csv: mask {row['mask']} does not pair with image {row['image']}")
    return [Record(file=row["image"], label=row["class_if_known"] or "unknown",
                   group=groups.get(row["shared_file"], row["image"]), source=row["source"], set="pool",
                   shippable=False) for row in rows]


def _mask_path(image: str) -> str:
    return image.replace("lungs/images/", "lungs/masks/", 1)


def _load(data_dir: str | Path, records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([segmenter_square(np.asarray(Image.open(Path(data_dir) / r.file).convert("L"),
                                                   dtype=np.float32) / 255) for r in records])
    masks = np.stack([np.asarray(Image.open(Path(data_dir) / _mask_path(r.file)).convert("L")) > 127 for r in records])
    return images, masks.astype(np.float32)


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of boolean masks (N x H x W)."""
    p, t = predicted.reshape(len(predicted), -1).astype(bool), truth.reshape(len(truth), -1).astype(bool)
    inter, total, union = (p & t).sum(1), p.sum(1) + t.sum(1), (p | t).sum(1)
    return 2 * inter / np.maximum(total, 1), inter / np.maximum(union, 1)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((1, 2, 3))
    soft_dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice.mean()


def _predict(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    segmenter = LungSegmenter(model, {})
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 32):
            x = standardise(torch.from_numpy(images[start:start + 32][:, None]))
            out.append(torch.sigmoid(segmenter.model(x)).squeeze(1).numpy() > 0.5)
    return np.stack([keep_largest_two(m) for m in np.concatenate(out)])


def train_lungs(cfg: LungTrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or resume); with ``export_dir``, write ``<export_dir>/lungs`` and return the sidecar."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    splits = split_records(lung_records(cfg.data_dir), cfg.seed)
    if cfg.limit:
        splits = {k: v[:cfg.limit] for k, v in splits.items()}
    (tr_x, tr_y), (va_x, va_y) = _load(cfg.data_dir, splits["train"]), _load(cfg.data_dir, splits["val"])
    torch.manual_seed(cfg.seed)
    model = build_segmenter().to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = max(1, len(tr_x) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                   pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    progress: dict[str, Any] = {"epoch": 0, "best": -1.0, "history": []}
    last = run / "last.pt"
    if resume and last.exists():
        progress, _ = load_checkpoint(last, model, optimiser, schedule, gen)
        print(f"resumed after epoch {progress['epoch']}", flush=True)
    for epoch in range(progress["epoch"] + 1, cfg.epochs + 1):
        started, running = time.time(), 0.0
        model.train()
        order = torch.randperm(len(tr_x), generator=gen)
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].numpy()
            theta = random_theta(len(idx), gen, max_degrees=12, scale=(0.8, 1.15), aspect=(0.8, 1.25), max_shift=0.08)
            films = random_acquisition(tr_x[idx], gen, cfg.acquisition) if cfg.acquisition else tr_x[idx]
            x = warp(torch.from_numpy(films[:, None]), theta)
            y = (warp(torch.from_numpy(tr_y[idx][:, None]), theta) > 0.5).float()
            x = standardise(random_photometric(x, gen))
            loss = _loss(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item()
        dice, _ = dice_iou(_predict(model, va_x), va_y)
        entry = {"epoch": epoch, "train_loss": running / steps, "val_dice": float(dice.mean()),
                 "seconds": round(time.time() - started, 1)}
        progress["history"].append(entry)
        improved = entry["val_dice"] > progress["best"]
        if improved:
            progress["best"] = entry["val_dice"]
            torch.save({"model": model.state_dict(), "epoch": epoch}, run / "best.pt")
        progress["epoch"] = epoch
        save_checkpoint(last, model, optimiser, schedule, gen, progress)
        print(f"lungs epoch {epoch}/{cfg.epochs}: loss {entry['train_loss']:.3f} val Dice {entry['val_dice']:.4f} "
              f"| {entry['seconds']}s{' *' if improved else ''}", flush=True)
    (run / "history.json").write_text(json.dumps(progress["history"], indent=1))
    return export_lungs(cfg, splits, progress) if cfg.export_dir else {}


def dice_under_acquisition(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, seed: int = 20
                           ) -> dict[str, float]:
    """Mean Dice on ``images`` (N x 256 x 256 segmenter squares in [0, 1]) through each acquisition transform at
    full strength (``measure-shift``'s), one seeded draw per film: how far the lung box moves when the film was
    made differently. The transforms act on the square here, not on the full-size film as on upload."""
    from covidviz.data.acquisition import TRANSFORMS
    out = {}
    for index, (name, transform) in enumerate(TRANSFORMS.items()):
        rng = np.random.default_rng([seed, index])
        shifted = np.stack([transform(image, rng, 1.0) for image in images]).astype(np.float32)
        out[name] = float(dice_iou(_predict(model, shifted), masks)[0].mean())
    return out


def _ms_per_image(model: torch.nn.Module, repeats: int = 20) -> float:
    x = standardise(torch.rand(1, 1, INPUT_SIZE, INPUT_SIZE))
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - started) / repeats * 1000


def export_lungs(cfg: LungTrainConfig, splits: dict[str, list[Record]], progress: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the best checkpoint once on the held-out masks and ship it with its sidecar."""
    from covidviz.verified import save_verified
    model = build_segmenter().to(memory_format=torch.channels_last)
    model.load_state_dict(torch.load(Path(cfg.run_dir) / "best.pt", map_location="cpu", weights_only=True)["model"])
    test = splits["test"]
    te_x, te_y = _load(cfg.data_dir, test)
    dice, iou = dice_iou(_predict(model, te_x), te_y)
    per_source = {}
    for source in sorted({r.source for r in test}):
        sel = np.array([r.source == source for r in test])
        per_source[source] = {"n": int(sel.sum()), "dice": float(dice[sel].mean()), "iou": float(iou[sel].mean())}
    model.eval()
    sidecar = {
        "name": "covidviz lung segmenter",
        "input": f"{INPUT_SIZE} x {INPUT_SIZE}: whole image resized to a square, 0.5-99.5 percentile stretch, "
                 "per-image standardisation",
        "initialisation": "random (no pretrained weights)",
        "training": {**{k: v for k, v in asdict(cfg).items()
                        if k in ("epochs", "batch_size", "lr", "seed", "acquisition")},
                     "best_epoch": max(progress["history"], key=lambda e: e["val_dice"])["epoch"],
                     "epochs_run": progress["epoch"], "history": progress["history"],
                     "augmentation": "rotation +-12 deg, zoom 0.8-1.15, horizontal/vertical stretch 0.8-1.25, "
                                     "shift +-8%, gamma, contrast, brightness, blur, noise"
                                     + (f"; {cfg.acquisition:.0%} of films through one acquisition transform"
                                        if cfg.acquisition else ""),
                     "notes": ["141 of the mask films are external-set films (Shenzhen, Hannover): the segmenter "
                               "saw them, never their class labels"]},
        "data": {name: len(records) for name, records in splits.items()},
        "test": {"n": len(test), "dice_mean": float(dice.mean()), "dice_median": float(np.median(dice)),
                 "iou_mean": float(iou.mean()), "per_source": per_source,
                 "dice_under_acquisition": dice_under_acquisition(model, te_x, te_y)},
        "cpu_ms_per_image_256px": round(_ms_per_image(model), 1),
        "cpu_threads": torch.get_num_threads(),
    }
    save_verified(model.state_dict(), Path(cfg.export_dir) / LUNGS_SUBDIR, sidecar, ARCHITECTURE)
    return sidecar
