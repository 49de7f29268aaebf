"""``python -m covidviz compare-build``: gather the comparison runs into ``weights/comparison/``.

For every finished backbone run and cross-validation fold under ``--runs``: its evaluation artifacts and
sidecar are copied; its weights too when they are small (under :data:`WEIGHTS_LIMIT_MB` at fp16), so the
Diagnose page can switch to it; otherwise its recipe reproduces them. Latency at batch 1 and throughput are
measured here, on the same engine for every model, the models taking turns over three rounds.
Then ``comparison.json`` is written: everything the Model comparison page shows.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from covidviz.evaluation.artifacts.saved import SplitPredictions, load_predictions
from covidviz.evaluation.measures.comparison import COMPARED_SPLITS, crossval_summary, model_entry
from covidviz.model.sidecar import ARCHITECTURE_NAMES, update_sidecar
from covidviz.paths import COMPARISON_DIR, WEIGHTS_DIR
from covidviz.training.recipes import REDUCED_CPU
from covidviz.verified import read_sidecar

WEIGHTS_LIMIT_MB = 25.0
SHIPPED_ID = "shipped"
EVAL_FILES = ("metrics.json", "val_predictions.csv", "test_predictions.csv", "external_predictions.csv")


def _predictions(folder: Path) -> dict[str, SplitPredictions]:
    return {split: load_predictions(folder, split) for split in COMPARED_SPLITS}


def _copy_run(export: Path, target: Path, with_weights: bool) -> None:
    if export.resolve() == target.resolve():  # --committed: the run is already where it belongs
        return
    (target / "eval").mkdir(parents=True, exist_ok=True)
    for name in EVAL_FILES:
        shutil.copy2(export / "eval" / name, target / "eval" / name)
    # not split.csv: a backbone's is the shipped model's, a fold's follows from its seed (and its test predictions
    # list the held-out images); ten copies of 9,000 rows would only weigh on the repository
    for name in ("model.json",) + (("model.safetensors",) if with_weights else ()):
        shutil.copy2(export / name, target / name)
    if not with_weights:
        (target / "model.safetensors").unlink(missing_ok=True)
    sidecar = read_sidecar(target)
    recipe = recipe_of(sidecar)["name"]
    if recipe not in sidecar.get("name", ""):  # wherever the model is named (Diagnose, reports, audit), say so
        update_sidecar(target, name=f"{sidecar.get('name', 'covidviz model')}, {recipe}")


def _shipped_recipe(sidecar: dict[str, Any]) -> str:
    stages = sidecar.get("training", {}).get("stages", [])
    steps = " → ".join(f"{s.get('size')} px × {s.get('epochs_run')} epochs" for s in stages)
    return f"shipped recipe: {steps} (lung fields, full training set per epoch)"


def images_seen(sidecar: dict[str, Any]) -> int | None:
    """Training images drawn over all stages (epochs run x images per epoch), from the sidecar's record."""
    import re
    training = sidecar.get("training", {})
    per_epoch = re.search(r"(\d+) images per epoch", training.get("sampling", ""))
    if not per_epoch:
        return None
    return sum(int(stage.get("epochs_run") or 0) for stage in training.get("stages", [])) * int(per_epoch.group(1))


def recipe_of(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The recipe a comparison run was trained on, as its sidecar records it."""
    if "recipe_details" in sidecar:
        return sidecar["recipe_details"]
    if sidecar.get("recipe") == REDUCED_CPU.name:
        return REDUCED_CPU.as_dict()
    return {"name": sidecar.get("recipe", "unnamed recipe"), "description": sidecar.get("recipe", "unnamed recipe")}


def _speed(folders: dict[str, Path], repeats: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Batch-1 latency (ms) and batch-32 throughput (images/s) of each model on ONNX Runtime (where a model's
    weights are not committed, an untrained network of its architecture and input size stands in).

    Models take turns in blocks (each block: one model's batch-1 median, then its batch-32 median), over
    ``rounds`` rounds, and each figure is the median over rounds: a drift in machine load touches every model,
    while no model is timed right after another's call, when that session's threads still spin for work."""
    import statistics

    from covidviz.model.engine import build_engine, probe_batch
    from covidviz.model.network import build_model
    from covidviz.model.weights import load_weights
    from covidviz.timing import median_seconds
    engines = {}
    for model_id, folder in folders.items():
        sidecar = read_sidecar(folder)
        if (folder / sidecar.get("weights_file", "model.safetensors")).is_file():
            model, sidecar = load_weights(folder)
        else:  # weights not committed: the time of a pass does not depend on the weights' values
            model = build_model(3, sidecar["architecture"]).eval()
            sidecar = {**sidecar, "weights_sha256": f"untrained {sidecar['architecture']} (timing only)"}
        engines[model_id] = (build_engine("onnxruntime", model, sidecar)[0], int(sidecar["input_size"]))
    one: dict[str, list[float]] = {k: [] for k in engines}
    many: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for k, (engine, size) in engines.items():
            single, batch = probe_batch(size, 1), probe_batch(size, 32)
            one[k].append(median_seconds(lambda engine=engine, single=single: engine.run(single), repeats))
            many[k].append(median_seconds(lambda engine=engine, batch=batch: engine.run(batch), max(3, repeats // 5)))
    return {k: {"latency_ms_batch1": round(statistics.median(one[k]) * 1000, 1),
                "throughput_img_s_batch32": round(32 / statistics.median(many[k]), 1)} for k in engines}


def _info(model_id: str, folder: Path, sidecar: dict[str, Any], committed: bool) -> dict[str, Any]:
    from covidviz.model.network import architecture, build_model, parameter_count
    arch = sidecar["architecture"]
    shipped = model_id == SHIPPED_ID
    weights = folder / sidecar.get("weights_file", "model.safetensors")
    size_mb = weights.stat().st_size / 1e6 if weights.is_file() else sum(  # not committed: its tensors at fp16
        2 * t.numel() for t in build_model(3, arch).state_dict().values() if t.is_floating_point()) / 1e6
    reduced = not shipped and sidecar.get("recipe") == REDUCED_CPU.name
    kind = "shipped" if shipped else "reduced recipe" if reduced else "candidate"  # a candidate: a full recipe, not shipped
    return {"id": model_id, "architecture": arch,
            "title": f"{architecture(arch).title} ({kind})",
            "recipe": _shipped_recipe(sidecar) if shipped else "{name}: {description}".format(**recipe_of(sidecar)),
            "reduced_recipe": reduced, "parameters": parameter_count(build_model(3, arch)),
            "weights_mb_fp16": round(size_mb, 1), "weights_committed": committed,
            "weights_sha256": sidecar["weights_sha256"], "training_images_seen": images_seen(sidecar), "input_size": int(sidecar["input_size"]),
            "temperature": sidecar.get("temperature")}


def build_comparison(runs: str | Path, weights_dir: str | Path = WEIGHTS_DIR, repeats: int = 30,
                     n_resamples: int = 2000, readme: str | Path | None = None, committed: bool = False) -> Path:
    """Copy the finished runs into ``<weights_dir>/comparison`` and write ``comparison.json`` (and the README's
    comparison block when ``readme`` is given); return its path. ``committed``: take the runs already gathered
    there instead (after a new shipped model, to measure every run against it without their run folders)."""
    import torch
    runs, weights_dir = Path(runs), Path(weights_dir)
    out = weights_dir / COMPARISON_DIR
    out.mkdir(parents=True, exist_ok=True)
    layout = {arch: (out / arch if committed else runs / arch / "export") for arch in ARCHITECTURE_NAMES}
    finished = {arch: folder for arch, folder in layout.items() if (folder / "eval" / "metrics.json").is_file()}
    if not finished:
        raise FileNotFoundError(f"no finished comparison run under {out if committed else runs}: run "
                                "`python -m covidviz compare-train` first")
    speed = _speed({SHIPPED_ID: weights_dir, **finished}, repeats)
    reference = _predictions(weights_dir)
    shipped_metrics = json.loads((weights_dir / "eval" / "metrics.json").read_text())
    models = [model_entry({**_info(SHIPPED_ID, weights_dir, read_sidecar(weights_dir), True), **speed[SHIPPED_ID]},
                          shipped_metrics, reference, None)]
    for arch, export in finished.items():
        sidecar = read_sidecar(export)
        weights = export / "model.safetensors"
        small = weights.is_file() and weights.stat().st_size / 1e6 < WEIGHTS_LIMIT_MB
        _copy_run(export, out / arch, with_weights=small)
        metrics = json.loads((export / "eval" / "metrics.json").read_text())
        models.append(model_entry({**_info(arch, export, sidecar, small), **speed[arch]}, metrics,
                                  _predictions(export), reference, n_resamples))
    pattern, depth = ("fold-*/eval/metrics.json", -3) if committed else ("fold-*/export/eval/metrics.json", -4)
    folds = sorted(((out if committed else runs) / "cv").glob(pattern), key=lambda p: int(p.parts[depth][5:]))
    fold_metrics, planned = {}, None
    for path in folds:
        export = path.parent.parent
        _copy_run(export, out / "cv" / (export.name if committed else export.parent.name), with_weights=False)
        plan = read_sidecar(export)["cross_validation"]
        planned = plan["folds"]
        fold_metrics[int(plan["fold"])] = json.loads(path.read_text())
    report = {
        "generated_by": "python -m covidviz compare-build",
        "recipe": recipe_of(read_sidecar(next(iter(finished.values())))),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "engine": "ONNX Runtime fp32 (the same for every model)",
                    "timing": "models in turn, 3 rounds, median of each model's per-round medians"},
        "weights_limit_mb": WEIGHTS_LIMIT_MB,
        "paired_bootstrap": {"resamples": n_resamples, "method": "scipy.stats.bootstrap, paired, percentile 95%",
                             "reference": SHIPPED_ID},
        "models": models,
        "cross_validation": {"architecture": "densenet121", "n_folds": planned, "finished": len(fold_metrics),
                             "recipe": recipe_of(read_sidecar(folds[0].parent.parent))["name"] if folds else None,
                             "grouping": "split_group (patients), stratified by class and source",
                             **crossval_summary(fold_metrics)} if fold_metrics else None,
    }
    path = out / "comparison.json"
    path.write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    if readme is not None:
        from covidviz.evaluation.documents.comparison_facts import COMPARISON_BLOCK, comparison_block
        readme = Path(readme)
        readme.write_text(COMPARISON_BLOCK.replace(readme.read_text(), comparison_block(report)))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
