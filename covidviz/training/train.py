"""Training from random initialisation (or ``--init`` a compatible checkpoint) on the pool.

Resumable: ``<run>/last.pt`` is written after every epoch with model, optimiser, schedule,
sampler generator and history; ``--resume`` continues from it. ``<run>/best.pt`` holds the
best epoch by validation macro F1 (ties broken by validation loss). The external Hannover
set is never read here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from covidviz import CLASSES
from covidviz.paths import ROOT
from covidviz.training.augment import augment
from covidviz.data.collection import Record, load_canonical, read_metadata
from covidviz.model.inference import predict_canonical
from covidviz.evaluation.metrics import confusion_matrix, macro_f1, negative_log_likelihood, per_class_rates
from covidviz.model.network import build_model, load_compatible_state
from covidviz.model.preprocessing import resize_batch, standardise
from covidviz.data.split import split_records, write_split
from covidviz.model.weights import save_weights


@dataclass
class TrainConfig:
    data_dir: str
    run_dir: str
    size: int = 128
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    patience: int = 8
    seed: int = 42
    split_seed: int = 42
    init: str | None = None
    export_dir: str | None = None
    limit: int | None = None  # images per split, for smoke tests
    threads: int | None = None
    fast: bool = True  # bf16 autocast + channels_last
    stop_after: int | None = None  # end this process after that epoch, as an interruption would
    notes: list[str] = field(default_factory=list)


def sample_weights(records: list[Record]) -> np.ndarray:
    """Per-image sampling weights: every class equally often; within a class, each source in
    proportion to the square root of its size, so small sources count without being repeated
    into memorisation."""
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        counts[(r.label, r.source)] = counts.get((r.label, r.source), 0) + 1
    share: dict[tuple[str, str], float] = {}
    for label in {r.label for r in records}:
        roots = {k: math.sqrt(n) for k, n in counts.items() if k[0] == label}
        total = sum(roots.values())
        share.update({k: v / total for k, v in roots.items()})
    weights = np.array([share[(r.label, r.source)] / counts[(r.label, r.source)] for r in records])
    return weights / weights.sum()


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=ROOT, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _load_init(path: str) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """State dict and earlier recipe stages from a run checkpoint, safetensors file or torchvision .pth."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        from covidviz.model.weights import load_weights
        model, sidecar = load_weights(p if p.is_dir() else p.parent)
        return model.state_dict(), sidecar.get("training", {}).get("stages", [])
    blob = torch.load(p, map_location="cpu", weights_only=True)  # no arbitrary code from pickles
    if isinstance(blob, dict) and "model" in blob:
        return blob["model"], blob.get("stages", [])
    return blob, [{"stage": "external initialisation", "checkpoint": p.name}]


def evaluate_split(model: torch.nn.Module, images: np.ndarray, targets: np.ndarray, size: int,
                   fast: bool) -> dict[str, Any]:
    probs = predict_canonical(model, images, size, batch_size=64, fast=fast)
    predicted = probs.argmax(1)
    matrix = confusion_matrix(targets, predicted, len(CLASSES))
    rates = per_class_rates(matrix)
    nll = negative_log_likelihood(targets, probs)
    return {"loss": nll, "accuracy": float((predicted == targets).mean()),
            "macro_f1": macro_f1(targets, predicted, len(CLASSES)),
            "covid_sensitivity": rates[0]["sensitivity"], "covid_precision": rates[0]["precision"],
            "confusion": matrix.tolist()}


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) one training stage; return the path of the best checkpoint."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = _device()
    pool = [r for r in read_metadata(cfg.data_dir) if r.set == "pool"]
    splits = split_records(pool, cfg.split_seed)
    write_split(run / "split.csv", splits)
    train_recs, val_recs = splits["train"], splits["val"]
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        train_recs = [train_recs[i] for i in sorted(rng.permutation(len(train_recs))[:cfg.limit])]
        val_recs = [val_recs[i] for i in sorted(rng.permutation(len(val_recs))[:cfg.limit])]
    train_img = load_canonical(cfg.data_dir, train_recs)
    val_img = load_canonical(cfg.data_dir, val_recs)
    train_y = np.array([r.target for r in train_recs])
    val_y = np.array([r.target for r in val_recs])

    torch.manual_seed(cfg.seed)  # initial weights, so a run is reproducible
    model = build_model(len(CLASSES))
    stages: list[dict[str, Any]] = []
    if cfg.init:
        state, stages = _load_init(cfg.init)
        skipped = load_compatible_state(model, state)
        cfg.notes.append(f"initialised from {Path(cfg.init).name}; newly initialised: {skipped}")
    model = model.to(device, memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_recs) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                   pct_start=0.15 if not cfg.init else 0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    state_ = {"epoch": 0, "best": None, "history": [], "bad_epochs": 0}
    last = run / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["schedule"])
        gen.set_state(ckpt["generator"])
        state_ = json.loads(ckpt["progress"])
        stages = json.loads(ckpt["stages"])
        print(f"resumed from {last} after epoch {state_['epoch']}")
    weights = torch.from_numpy(sample_weights(train_recs))
    autocast_dtype = torch.bfloat16 if cfg.fast else None

    for epoch in range(state_["epoch"] + 1, cfg.epochs + 1):
        if state_["bad_epochs"] >= cfg.patience:
            print(f"early stop: no validation improvement for {cfg.patience} epochs")
            break
        model.train()
        order = torch.multinomial(weights, steps_per_epoch * cfg.batch_size, replacement=True, generator=gen)
        started, running = time.time(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs} @{cfg.size}px", unit="batch")
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].numpy()
            batch = torch.from_numpy(train_img[idx].astype(np.float32)).unsqueeze(1)
            x = standardise(augment(resize_batch(batch, cfg.size), gen)).to(device)
            y = torch.from_numpy(train_y[idx]).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=cfg.fast):
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=cfg.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (step + 1):.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
        val = evaluate_split(model, val_img, val_y, cfg.size, cfg.fast)
        val.update(epoch=epoch, train_loss=running / steps_per_epoch, seconds=round(time.time() - started, 1))
        state_["history"].append(val)
        score = (val["macro_f1"], -val["loss"])
        improved = state_["best"] is None or score > tuple(state_["best"])
        state_["epoch"] = epoch
        state_["bad_epochs"] = 0 if improved else state_["bad_epochs"] + 1
        print(f"epoch {epoch}: train loss {val['train_loss']:.3f} | val loss {val['loss']:.3f} acc {val['accuracy']:.3f} "
              f"macro-F1 {val['macro_f1']:.3f} covid sens {val['covid_sensitivity']:.3f} prec {val['covid_precision']:.3f}"
              f" | {val['seconds']}s{' *' if improved else ''}", flush=True)
        this_stage = {"stage": f"{cfg.size}px", **{k: v for k, v in asdict(cfg).items()
                                                  if k in ("size", "epochs", "batch_size", "lr", "weight_decay",
                                                           "label_smoothing", "seed", "fast")},
                      "epochs_run": epoch, "best_epoch": epoch if improved else None}
        if improved:
            state_["best"] = list(score)
            torch.save({"model": model.state_dict(), "stages": stages + [this_stage], "epoch": epoch,
                        "val": val}, run / "best.pt")
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "generator": gen.get_state(), "progress": json.dumps(state_), "stages": json.dumps(stages)},
                   run / "last.tmp")
        os.replace(run / "last.tmp", last)  # atomic: a kill mid-write never leaves a broken checkpoint
        if cfg.stop_after is not None and epoch >= cfg.stop_after:
            print(f"stopping after epoch {epoch} as asked; continue with --resume")
            return run / "best.pt"
    (run / "history.json").write_text(json.dumps(state_["history"], indent=1))
    best = run / "best.pt"
    if cfg.export_dir:
        export(best, cfg, splits)
    return best


def export(best: Path, cfg: TrainConfig, splits: dict[str, list[Record]]) -> Path:
    """Write the best checkpoint to ``cfg.export_dir`` as safetensors + sidecar, with the split."""
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    model = build_model(len(CLASSES))
    model.load_state_dict(ckpt["model"])
    out = Path(cfg.export_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / "split.csv", splits)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for name, records in splits.items():
        for r in records:
            per_source = counts.setdefault(name, {}).setdefault(r.label, {})
            per_source[r.source] = per_source.get(r.source, 0) + 1
    sidecar = {
        "name": "covidviz DenseNet-121",
        "input_size": cfg.size,
        "preprocessing": {"canonical": "grayscale [0,1]; uniform borders trimmed; shorter side to 256, centre crop; "
                                       "0.5-99.5 percentile stretch", "model_input": f"bilinear antialiased resize to "
                          f"{cfg.size}; per-image standardisation; gray replicated to 3 channels"},
        "initialisation": "random (no pretrained weights)" if not ckpt["stages"] or
        ckpt["stages"][0].get("stage") != "external initialisation" else ckpt["stages"][0]["checkpoint"],
        "training": {"stages": ckpt["stages"], "best_epoch": ckpt["epoch"], "validation": ckpt["val"],
                     "sampling": "class-balanced; within a class, sources weighted by sqrt(count)",
                     "augmentation": "rotation +-10 deg, zoom 0.85-1.2, shift +-6%, gamma 0.7-1.5, contrast, "
                                     "brightness, blur, noise, cut-out; no flips",
                     "notes": cfg.notes},
        "data": {"counts": counts, "split_seed": cfg.split_seed, "split_file": "split.csv",
                 "external_used_for_training": False},
        "code_commit": _git_commit(),
        "temperature": 1.0,
    }
    return save_weights(model, out, sidecar)
