"""The training loop, from random initialisation (or ``--init`` a compatible checkpoint) on the pool. The data
it reads is :mod:`covidviz.training.prepare`'s, its settings :mod:`covidviz.training.config`'s, and the best
epoch is written out by :mod:`covidviz.training.export`.

With ``segmenter_dir`` the model reads lung fields (the crop around both lungs, see
:mod:`covidviz.model.preprocessing`); the prepared images are cached in the run folder, keyed by the
segmenter's sha256. Resumable: ``<run>/last.pt`` is written after every epoch with model, optimiser,
schedule, sampler generator and history; ``--resume`` continues from it. ``<run>/best.pt`` holds the
best epoch by validation macro F1 (ties broken by validation loss). The external sets are never read here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from covidviz import CLASSES
from covidviz.data.collection import Record
from covidviz.data.split import write_split
from covidviz.evaluation.measures.age_groups import GROUPS, age_group, pneumonia_recall_by_age
from covidviz.evaluation.measures.metrics import confusion_matrix, macro_f1, negative_log_likelihood, per_class_rates
from covidviz.model.inference import predict_canonical
from covidviz.model.network import build_model, load_compatible_state
from covidviz.model.precision import bf16_speedup, native_bf16
from covidviz.model.preprocessing import resize_batch, standardise
from covidviz.training.augment import acquisition_names, augment, augment_with_masks, random_acquisition
from covidviz.training.checkpoint import load_checkpoint, load_init, save_checkpoint
from covidviz.training.config import TrainConfig
from covidviz.training.export import export
from covidviz.training.lung_attention import gradcam_energy, outside_lung_share
from covidviz.training.prepare import make_splits, prepared_fields, training_segmenter


def sample_weights(records: list[Record], power: float = 0.5, adult_pneumonia: float | None = None) -> np.ndarray:
    """Per-image sampling weights: every class equally often; within a class, each source in
    proportion to its size to the ``power`` (0.5: the square root, so small sources count without
    being repeated into memorisation; 0: every source equally).

    ``adult_pneumonia`` (0 to 1): the share of the pneumonia class's draws that go to adult sources, the rest to
    the paediatric one (Kermany), each group's sources still in proportion to size to the ``power``. The
    pneumonia class is mostly children's films, and adult pneumonia that is not COVID-19 is the distinction
    clinicians need; None keeps the class like the others."""
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        counts[(r.label, r.source)] = counts.get((r.label, r.source), 0) + 1
    share: dict[tuple[str, str], float] = {}
    for label in {r.label for r in records}:
        roots = {k: math.pow(n, power) for k, n in counts.items() if k[0] == label}
        if label == "pneumonia" and adult_pneumonia is not None:
            groups = {g: sum(v for k, v in roots.items() if age_group(k[1]) == g) for g in GROUPS}
            if not all(groups.values()):
                raise ValueError(f"--adult-pneumonia needs adult and paediatric pneumonia films in training; "
                                 f"found {', '.join(f'{g}: {n:.0f}' for g, n in groups.items())}")
            wanted = {"adults": adult_pneumonia, "children": 1.0 - adult_pneumonia}
            share.update({k: v / groups[age_group(k[1])] * wanted[age_group(k[1])] for k, v in roots.items()})
            continue
        total = sum(roots.values())
        share.update({k: v / total for k, v in roots.items()})
    weights = np.array([share[(r.label, r.source)] / counts[(r.label, r.source)] for r in records])
    return weights / weights.sum()


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _acquired(images: np.ndarray, idx: np.ndarray, gen: torch.Generator, acquisition: float) -> np.ndarray:
    """The films ``idx`` in [0, 1], a share ``acquisition`` of them through one acquisition transform."""
    unit = _as_unit(images[idx])
    return random_acquisition(unit, gen, acquisition) if acquisition > 0 else unit


def _batch(images: np.ndarray, targets: np.ndarray, idx: np.ndarray, size: int, gen: torch.Generator,
           device: torch.device, acquisition: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.from_numpy(_acquired(images, idx, gen, acquisition)).unsqueeze(1)
    return standardise(augment(resize_batch(batch, size), gen)).to(device), torch.from_numpy(targets[idx]).to(device)


def _lung_masks(lungs_packed: np.ndarray, idx: np.ndarray, width: int, size: int) -> torch.Tensor:
    """The films ``idx``'s lung masks, unpacked from the cache's bits (rows ``width`` wide), N x 1 x size x size."""
    masks = torch.from_numpy(np.unpackbits(lungs_packed[idx], axis=-1, count=width).astype(np.float32))
    return resize_batch(masks.unsqueeze(1), size)


def _batch_with_lungs(images: np.ndarray, lungs_packed: np.ndarray, targets: np.ndarray, idx: np.ndarray, size: int,
                      gen: torch.Generator, device: torch.device, acquisition: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_batch` (the same draws) with each film's lung mask moved by the film's own geometric augmentation."""
    unit = _acquired(images, idx, gen, acquisition)
    batch, moved = augment_with_masks(resize_batch(torch.from_numpy(unit).unsqueeze(1), size),
                                      _lung_masks(lungs_packed, idx, unit.shape[-1], size), gen)
    return standardise(batch).to(device), moved.to(device), torch.from_numpy(targets[idx]).to(device)


def _paired_batch(images: np.ndarray, targets: np.ndarray, idx: np.ndarray, size: int, gen: torch.Generator,
                  device: torch.device, acquisition: float = 0.0, twin_transforms: Sequence[str] = (),
                  lungs_packed: np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Each film (through an acquisition transform at ``acquisition`` share, as :func:`_batch`) and its twin: the
    same film through one of ``twin_transforms`` (default: any) for certain, both under the same geometric and
    photometric augmentation (stacked as two channels), so the twins differ only in how the film was made. With
    ``lungs_packed``, also the films' lung masks, moved by the same geometry (as :func:`_batch_with_lungs`);
    otherwise None."""
    unit = _as_unit(images[idx])
    first = _acquired(images, idx, gen, acquisition)
    twin = random_acquisition(unit, gen, 1.0, twin_transforms)
    pair = resize_batch(torch.from_numpy(np.stack([first, twin], 1)), size)
    moved = None
    if lungs_packed is None:
        pair = augment(pair, gen)
    else:
        pair, moved = augment_with_masks(pair, _lung_masks(lungs_packed, idx, unit.shape[-1], size), gen)
        moved = moved.to(device)
    return (standardise(pair[:, :1]).to(device), standardise(pair[:, 1:]).to(device),
            torch.from_numpy(targets[idx]).to(device), moved)


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


def _lung_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor, masks: torch.Tensor,
               y: torch.Tensor, bf16: bool, label_smoothing: float, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy plus ``weight`` times the share of the Grad-CAM maps outside the lungs
    (:mod:`covidviz.training.lung_attention`): the heatmaps put half their energy outside the lungs (issue 20).
    Returns the loss and that share, which the run logs."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        feature_map = model.features(x)
        logits = model.head(feature_map).float()
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    energy = gradcam_energy(feature_map.float(), model.classifier.weight)
    share = outside_lung_share(energy, masks)
    loss = loss + weight * share
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss, share.detach()


def _consistent_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor, twin: torch.Tensor,
                     y: torch.Tensor, bf16: bool, label_smoothing: float, weight: float,
                     masks: torch.Tensor | None = None, outside_weight: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-entropy on a film and its acquisition-shifted twin, plus ``weight`` times the Jensen-Shannon
    divergence between their predictions (AugMix's consistency term): augmentation alone taught the models to
    classify shifted films, not to give them the same answer as the clean film (issue 20's class flips). With
    ``masks``, also ``outside_weight`` times the share of both readings' maps outside the lungs, as
    :func:`_lung_step`. Returns the loss and that share (None without masks)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        feature_map = model.features(torch.cat([x, twin]))
        logits = model.head(feature_map).float()
    loss = F.cross_entropy(logits, torch.cat([y, y]), label_smoothing=label_smoothing)
    p, q = logits.softmax(1).chunk(2)
    mean = ((p + q) / 2).clamp_min(1e-7).log()
    agreement = (F.kl_div(mean, p, reduction="batchmean") + F.kl_div(mean, q, reduction="batchmean")) / 2
    loss = loss + weight * agreement
    share = None
    if masks is not None:
        share = outside_lung_share(gradcam_energy(feature_map.float(), model.classifier.weight),
                                   torch.cat([masks, masks]))
        loss = loss + outside_weight * share
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss, None if share is None else share.detach()


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
                   fast: bool, sources: Sequence[str]) -> dict[str, Any]:
    """Argmax measures on a split, with pneumonia recall for adults and children apart (``[recalled, n]``
    per group): the pooled recall is mostly the children's."""
    probs = predict_canonical(model, _as_unit(images), size, batch_size=64, fast=fast)
    predicted = probs.argmax(1)
    matrix = confusion_matrix(targets, predicted, len(CLASSES))
    rates = per_class_rates(matrix)
    nll = negative_log_likelihood(targets, probs)
    return {"loss": nll, "accuracy": float((predicted == targets).mean()),
            "macro_f1": macro_f1(targets, predicted, len(CLASSES)),
            "covid_sensitivity": rates[0]["sensitivity"], "covid_precision": rates[0]["precision"],
            "pneumonia_recall": {g: [r.recalled, r.n]
                                 for g, r in pneumonia_recall_by_age(sources, targets, predicted).items()},
            "confusion": matrix.tolist()}


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) one training stage; return the path of the best checkpoint."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.twin_transforms and cfg.consistency <= 0:
        raise ValueError("--twin-transforms chooses the consistency term's twins: it needs --consistency")
    acquisition_names(cfg.twin_transforms)
    if cfg.adult_pneumonia is not None and not 0 < cfg.adult_pneumonia < 1:
        raise ValueError(f"--adult-pneumonia is a share of the pneumonia class's draws, between 0 and 1 (exclusive); "
                         f"got {cfg.adult_pneumonia}")
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
    segmenter = training_segmenter(cfg)
    if cfg.outside_lungs > 0 and segmenter is None:
        raise ValueError("the outside-the-lungs penalty needs lung masks: train on lung fields (--lungs weights)")
    train_fields = prepared_fields(cfg, run, "train", train_recs, segmenter)
    train_img, train_lungs = train_fields.images, train_fields.lungs_packed
    if cfg.outside_lungs > 0 and train_lungs is None:
        raise ValueError("the outside-the-lungs penalty needs the lung masks, which the shared prepared store "
                         "does not keep: train without --prepared-dir")
    val_img = prepared_fields(cfg, run, "val", val_recs, segmenter).images
    train_y = np.array([r.target for r in train_recs])
    val_y = np.array([r.target for r in val_recs])

    torch.manual_seed(cfg.seed)  # initial weights, so a run is reproducible
    model = build_model(len(CLASSES), cfg.arch)
    stages: list[dict[str, Any]] = []
    if cfg.init:
        state, stages = load_init(cfg.init)
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
    weights = torch.from_numpy(sample_weights(train_recs, cfg.source_power, cfg.adult_pneumonia))
    if cfg.fast is None:
        cfg.fast = _bf16_pays(model, cfg, device)
    else:
        emulated = cfg.fast and device.type == "cpu" and not native_bf16()
        cfg.notes.append(f"precision: {'bf16 autocast' if cfg.fast else 'fp32'}, as asked"
                         + ("; this CPU has no native bf16, so it is emulated and several times slower" if emulated
                            else ""))
        print(cfg.notes[-1], flush=True)

    for epoch in range(state_["epoch"] + 1, cfg.epochs + 1):
        if state_["bad_epochs"] >= cfg.patience:
            print(f"early stop: no validation improvement for {cfg.patience} epochs")
            break
        model.train()
        order = torch.multinomial(weights, steps_per_epoch * cfg.batch_size, replacement=True, generator=gen)
        started, running, outside = time.time(), 0.0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs} @{cfg.size}px", unit="batch")
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].numpy()
            if cfg.consistency > 0:
                x, twin, y, masks = _paired_batch(train_img, train_y, idx, cfg.size, gen, device, cfg.acquisition,
                                                  cfg.twin_transforms,
                                                  train_lungs if cfg.outside_lungs > 0 else None)
                loss, share = _consistent_step(model, optimiser, x, twin, y, cfg.fast, cfg.label_smoothing,
                                               cfg.consistency, masks, cfg.outside_lungs)
                outside += 0.0 if share is None else share.item()
            elif cfg.outside_lungs > 0:
                x, masks, y = _batch_with_lungs(train_img, train_lungs, train_y, idx, cfg.size, gen, device,
                                                cfg.acquisition)
                loss, share = _lung_step(model, optimiser, x, masks, y, cfg.fast, cfg.label_smoothing,
                                         cfg.outside_lungs)
                outside += share.item()
            else:
                x, y = _batch(train_img, train_y, idx, cfg.size, gen, device, cfg.acquisition)
                loss = _step(model, optimiser, x, y, cfg.fast, cfg.label_smoothing)
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (step + 1):.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
        val = evaluate_split(model, val_img, val_y, cfg.size, cfg.fast, [r.source for r in val_recs])
        val.update(epoch=epoch, train_loss=running / steps_per_epoch, seconds=round(time.time() - started, 1))
        if cfg.outside_lungs > 0:
            val["train_outside_share"] = outside / steps_per_epoch
        state_["history"].append(val)
        score = (val["macro_f1"], -val["loss"])
        improved = state_["best"] is None or score > tuple(state_["best"])
        state_["epoch"] = epoch
        state_["bad_epochs"] = 0 if improved else state_["bad_epochs"] + 1
        print(f"epoch {epoch}: train loss {val['train_loss']:.3f} | val loss {val['loss']:.3f} acc {val['accuracy']:.3f} "
              f"macro-F1 {val['macro_f1']:.3f} covid sens {val['covid_sensitivity']:.3f} prec {val['covid_precision']:.3f}"
              + "".join(f" | pneumonia {g} {k}/{n}" for g, (k, n) in val["pneumonia_recall"].items())
              + (f" | maps outside the lungs {val['train_outside_share']:.3f}" if cfg.outside_lungs > 0 else "")
              + f" | {val['seconds']}s{' *' if improved else ''}", flush=True)
        stage_name = f"{cfg.size}px" + (" lung field" if segmenter is not None else "")
        this_stage = {"stage": stage_name, **{k: v for k, v in asdict(cfg).items()
                                              if k in ("size", "epochs", "batch_size", "lr", "weight_decay",
                                                       "label_smoothing", "seed", "fast", "arch", "epoch_images",
                                                       "fold", "recipe", "acquisition", "source_power",
                                                       "adult_pneumonia",
                                                       "consistency", "twin_transforms", "outside_lungs")},
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
