"""Training from random initialisation (or ``--init`` a compatible checkpoint) on the pool.

With ``segmenter_dir`` the model reads lung fields (the crop around both lungs, see
:mod:`covidviz.model.preprocessing`); the prepared images are cached in the run folder, keyed by the
segmenter's sha256. Resumable: ``<run>/last.pt`` is written after every epoch with model, optimiser,
schedule, sampler generator and history; ``--resume`` continues from it. ``<run>/best.pt`` holds the
best epoch by validation macro F1 (ties broken by validation loss). The external sets are never read here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
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
from covidviz.training.checkpoint import load_checkpoint, save_checkpoint
from covidviz.data.collection import Record, load_prepared, radiologist_labels, read_metadata
from covidviz.model.precision import bf16_speedup, native_bf16
from covidviz.model.inference import predict_canonical
from covidviz.evaluation.metrics import confusion_matrix, macro_f1, negative_log_likelihood, per_class_rates
from covidviz.model.network import ARCHITECTURE, architecture, build_model, load_compatible_state
from covidviz.model.preprocessing import resize_batch, standardise
from covidviz.data.split import crossval_split, extend_split, read_split_groups, split_records, write_split
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
    fast: bool | None = None  # bf16 autocast; None: measured (only where the CPU has native bf16)
    stop_after: int | None = None  # end this process after that epoch, as an interruption would
    segmenter_dir: str | None = None  # a weights folder holding lungs/: train on lung fields
    previous_split: str | None = None  # keep this split.csv's group assignments, split only new groups
    radiologist_labels: bool = True  # NIH: the RSNA radiologists' reading where one exists
    epoch_images: int | None = None  # images sampled per epoch (default: the training set's size)
    source_power: float = 0.5  # within a class, source shares ~ count**power (0 = equal per source)
    arch: str = ARCHITECTURE  # one of covidviz.model.network.ARCHITECTURES
    fold: int | None = None  # cross-validation: test on this fold of the pool (0-based), train and validate on the rest
    folds: int = 5
    prepared_dir: str | None = None  # a folder shared by runs for the prepared-image cache (default: the run folder)
    recipe: str | None = None  # a name for this recipe, shown wherever its models are (e.g. "reduced CPU recipe")
    notes: list[str] = field(default_factory=list)


def sample_weights(records: list[Record], power: float = 0.5) -> np.ndarray:
    """Per-image sampling weights: every class equally often; within a class, each source in
    proportion to its size to the ``power`` (0.5: the square root, so small sources count without
    being repeated into memorisation; 0: every source equally)."""
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        counts[(r.label, r.source)] = counts.get((r.label, r.source), 0) + 1
    share: dict[tuple[str, str], float] = {}
    for label in {r.label for r in records}:
        roots = {k: math.pow(n, power) for k, n in counts.items() if k[0] == label}
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


def _segmenter(cfg: TrainConfig):
    if not cfg.segmenter_dir:
        return None
    from covidviz.lungs.segmenter import load_segmenter
    segmenter = load_segmenter(cfg.segmenter_dir)
    segmenter.model.to(memory_format=torch.channels_last)
    return segmenter


def _prepared_images(cfg: TrainConfig, run: Path, name: str, records: list[Record], segmenter) -> np.ndarray:
    """uint8 prepared images, cached per split and segmenter (preparing 9,000 films takes minutes)."""
    key = segmenter.sha256[:12] if segmenter is not None else "whole-image"
    if cfg.prepared_dir:
        from covidviz.training.prepared_store import prepared_from_store
        return prepared_from_store(Path(cfg.prepared_dir) / f"prepared-{key}.npz", cfg.data_dir, records, segmenter)
    cache = run / f"prepared-{name}-{key}.npz"
    files = np.array([r.file for r in records])
    if cache.exists():
        with np.load(cache) as blob:
            if np.array_equal(blob["files"], files):
                return blob["images"]
    prepared = load_prepared(cfg.data_dir, records, segmenter, dtype=np.uint8)
    np.savez(run / f"prepared-{name}.tmp.npz", images=prepared.images, files=files)
    os.replace(run / f"prepared-{name}.tmp.npz", cache)
    print(f"{name}: {len(records)} images prepared; lung field found for {prepared.lung_field.mean():.1%}",
          flush=True)
    return prepared.images


def _batch(images: np.ndarray, targets: np.ndarray, idx: np.ndarray, size: int, gen: torch.Generator,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.from_numpy(_as_unit(images[idx])).unsqueeze(1)
    return standardise(augment(resize_batch(batch, size), gen)).to(device), torch.from_numpy(targets[idx]).to(device)


def _as_unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255 if images.dtype == np.uint8 else images.astype(np.float32)


def _step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool,
          label_smoothing: float) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss


def _bf16_pays(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> bool:
    """Measure a training step in fp32 and bf16 (on a throw-away copy); bf16 only if at least 1.2x faster."""
    import copy
    probe = copy.deepcopy(model)
    probe_opt = torch.optim.SGD(probe.parameters(), lr=0.0)
    x = standardise(torch.rand(cfg.batch_size, 1, cfg.size, cfg.size)).to(device)
    y = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)
    speedup = bf16_speedup(lambda bf16: _step(probe, probe_opt, x, y, bf16, 0.0), repeats=2)
    chosen = speedup >= 1.2
    if not native_bf16():
        why = "this CPU has no native bf16: emulated bf16 would run several times slower, so it was not tried"
    else:
        why = f"a training step in bf16 measured {speedup:.2f}x the speed of fp32; bf16 needs 1.2x"
    cfg.notes.append(f"precision: {'bf16 autocast' if chosen else 'fp32'} ({why})")
    print(cfg.notes[-1], flush=True)
    return chosen


def evaluate_split(model: torch.nn.Module, images: np.ndarray, targets: np.ndarray, size: int,
                   fast: bool) -> dict[str, Any]:
    probs = predict_canonical(model, _as_unit(images), size, batch_size=64, fast=fast)
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
    splits = make_splits(cfg)
    write_split(run / "split.csv", splits)
    train_recs, val_recs = splits["train"], splits["val"]
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        train_recs = [train_recs[i] for i in sorted(rng.permutation(len(train_recs))[:cfg.limit])]
        val_recs = [val_recs[i] for i in sorted(rng.permutation(len(val_recs))[:cfg.limit])]
    segmenter = _segmenter(cfg)
    train_img = _prepared_images(cfg, run, "train", train_recs, segmenter)
    val_img = _prepared_images(cfg, run, "val", val_recs, segmenter)
    train_y = np.array([r.target for r in train_recs])
    val_y = np.array([r.target for r in val_recs])

    torch.manual_seed(cfg.seed)  # initial weights, so a run is reproducible
    model = build_model(len(CLASSES), cfg.arch)
    stages: list[dict[str, Any]] = []
    if cfg.init:
        state, stages = _load_init(cfg.init)
        skipped = load_compatible_state(model, state)
        cfg.notes.append(f"initialised from {Path(cfg.init).name}; newly initialised: {skipped}")
    model = model.to(device, memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, (cfg.epoch_images or len(train_recs)) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                   pct_start=0.15 if not cfg.init else 0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    state_ = {"epoch": 0, "best": None, "history": [], "bad_epochs": 0, "arch": cfg.arch}
    last = run / "last.pt"
    if resume and last.exists():
        started_as = json.loads(torch.load(last, map_location="cpu", weights_only=True)["progress"]).get("arch")
        if started_as not in (None, cfg.arch):
            raise ValueError(f"the run in {run} trains {started_as}; resume it with --arch {started_as}")
        state_, ckpt = load_checkpoint(last, model, optimiser, schedule, gen)
        stages = json.loads(ckpt["stages"])
        print(f"resumed from {last} after epoch {state_['epoch']}")
    weights = torch.from_numpy(sample_weights(train_recs, cfg.source_power))
    if cfg.fast is None:
        cfg.fast = _bf16_pays(model, cfg, device)

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
            x, y = _batch(train_img, train_y, idx, cfg.size, gen, device)
            loss = _step(model, optimiser, x, y, cfg.fast, cfg.label_smoothing)
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
        stage_name = f"{cfg.size}px" + (" lung field" if segmenter is not None else "")
        this_stage = {"stage": stage_name, **{k: v for k, v in asdict(cfg).items()
                                              if k in ("size", "epochs", "batch_size", "lr", "weight_decay",
                                                       "label_smoothing", "seed", "fast", "arch", "epoch_images",
                                                       "fold", "recipe")},
                      "epochs_run": epoch, "best_epoch": epoch if improved else None}
        if improved:
            state_["best"] = list(score)
            torch.save({"model": model.state_dict(), "stages": stages + [this_stage], "epoch": epoch,
                        "val": val}, run / "best.pt")
        save_checkpoint(last, model, optimiser, schedule, gen, state_, stages=json.dumps(stages))
        if cfg.stop_after is not None and epoch >= cfg.stop_after:
            print(f"stopping after epoch {epoch} as asked; continue with --resume")
            return run / "best.pt"
    (run / "history.json").write_text(json.dumps(state_["history"], indent=1))
    best = run / "best.pt"
    if cfg.export_dir:
        export(best, cfg, splits)
    return best


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
    segmenter = _segmenter(cfg)
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
                                 + (f"; {cfg.epoch_images} images per epoch" if cfg.epoch_images else ""),
                     "augmentation": "rotation +-10 deg, zoom 0.85-1.2, independent horizontal/vertical stretch "
                                     "0.85-1.18, shift +-6%, gamma 0.7-1.5, contrast, brightness, blur, noise, "
                                     "cut-out; no flips",
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
