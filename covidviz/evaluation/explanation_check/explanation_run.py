"""``python -m covidviz explain-check``: every CAM method checked on the model that ships.

Each method runs through the project's own CAM code (the one-pass Grad-CAM and pytorch-grad-cam on
private model copies), at the model's input size and with the Diagnose page's scaling, for the class the
model predicts: what is checked is what the page shows. Per image and method it records the map's time,
its share of energy inside the lungs, its ROAD scores and its similarity to the maps of the randomised
cascade. Records are appended to a progress file as they are made, so an interrupted run resumes where
it stopped; the summary is written to ``weights/eval/explanations.json`` at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from covidviz import CLASSES
from covidviz.evaluation.explanation_check.explanations import (
    PASS_BELOW,
    VERDICT_STAGE_INDEX,
    nested_subset,
    summarise_method,
    verdict_rule,
)
from covidviz.evaluation.explanation_check.faithfulness import ROAD_PERCENTILES, road_scores
from covidviz.evaluation.explanation_check.randomisation import Stage, cascade, cascade_stages, map_similarity
from covidviz.evaluation.explanation_check.sample import machine, sample_files
from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
from covidviz.explain.cam.library import library_cam
from covidviz.explain.cam.methods import FAST_METHOD, MAPS_REVISION, METHODS, SLOW_METHODS
from covidviz.explain.cam.scaling import normalise_like_library
from covidviz.lungs.field import lung_energy

MapFn = Callable[[torch.nn.Module, torch.Tensor, int], np.ndarray]
EDGES = "Edges (control)"


def page_map(method: str) -> MapFn:
    """The map the Diagnose page draws for ``method`` (per-map scaling, model input size), for any model of
    the project's architecture: :func:`covidviz.explain.reading.heatmap` without the Reading."""
    if method == FAST_METHOD:
        def fast(model: torch.nn.Module, batch: torch.Tensor, class_index: int) -> np.ndarray:
            return normalise_like_library(gradcam_all_classes(model, batch).maps[0], batch.shape[-1])[class_index]
        return fast
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
    return lambda model, batch, class_index: library_cam(model, method, batch, class_index)


def edge_map(model: torch.nn.Module, batch: torch.Tensor, class_index: int) -> np.ndarray:
    """A control that ignores the model: the Sobel edge magnitude of the input, scaled to [0, 1]. It must
    fail the randomisation check, and its ROAD score is what image structure alone earns."""
    from skimage.filters import sobel
    edges = sobel(batch[0, 0].detach().float().numpy())
    edges = edges - edges.min()
    return (edges / max(float(edges.max()), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Case:
    """One image as the model reads it: the input batch (1 x 3 x S x S), its true class, and the lung mask
    on the canonical image (None where no plausible pair of lungs was found)."""

    name: str
    batch: torch.Tensor
    true_class: int
    lungs: np.ndarray | None = None


@dataclass(frozen=True)
class Plan:
    """What runs: for each method its map function, how many images (per class) and cascade stages."""

    methods: dict[str, MapFn]
    stages: list[Stage]
    per_class: dict[str, int]  # method -> images per class (the nested first ones of the sample)
    n_stages: dict[str, int]  # method -> cascade stages run (from the head down)
    percentiles: tuple[int, ...] = ROAD_PERCENTILES
    seed: int = 0


def predicted_class(model: torch.nn.Module, batch: torch.Tensor) -> int:
    with torch.inference_mode():
        return int(model(batch.float()).argmax(1)[0])


def check_case(model: torch.nn.Module, randomised: list[tuple[str, torch.nn.Module]], case: Case, map_fn: MapFn,
               class_index: int, percentiles: Sequence[int], temperature: float, seed: int) -> dict[str, Any]:
    """One method on one image: time and map, lung share, ROAD, and similarity at each randomised stage."""
    start = time.perf_counter()
    cam = map_fn(model, case.batch, class_index)
    seconds = time.perf_counter() - start
    similarity = []
    for _, random_model in randomised:
        rho, ssim = map_similarity(cam, map_fn(random_model, case.batch, class_index))
        similarity.append({"spearman": _finite(rho), "ssim": _finite(ssim)})
    return {"image": case.name, "true_class": case.true_class, "class": class_index,
            "seconds_per_map": seconds,
            "lung_share": _finite(lung_energy(cam, case.lungs)) if case.lungs is not None else None,
            "road": road_scores(model, case.batch, cam, class_index, percentiles, temperature, seed),
            "randomisation": similarity}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def run_check(model: torch.nn.Module, cases: list[Case], plan: Plan, temperature: float = 1.0,
              progress_file: Path | None = None, run_key: str = "", log: TextIO | None = None
              ) -> dict[str, list[dict[str, Any]]]:
    """Every (image, method) record of the plan, reusing those already in ``progress_file`` for the same
    ``run_key`` and appending each new one to it as soon as it is made."""
    model = model.float().eval()
    done = read_progress(progress_file, run_key)
    models = cascade(model, plan.stages, plan.seed)
    labels = [c.true_class for c in cases]
    chosen = {m: set(nested_subset(labels, plan.per_class[m])) for m in plan.methods}
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in plan.methods}
    for position, case in enumerate(cases):
        class_index = predicted_class(model, case.batch)
        for method, map_fn in plan.methods.items():
            if position not in chosen[method]:
                continue
            record = done.get((case.name, method))
            if record is None:
                start = time.perf_counter()
                record = check_case(model, models[:plan.n_stages[method]], case, map_fn, class_index,
                                    plan.percentiles, temperature, plan.seed)
                append_progress(progress_file, run_key, method, record)
                say(log, f"[{position + 1}/{len(cases)}] {case.name} ({CLASSES[case.true_class]}) {method}: "
                          f"{record['seconds_per_map']:.2f} s per map, {time.perf_counter() - start:.1f} s in all, "
                          f"ROAD {record['road']['combined']:+.3f}")
            records[method].append(record)
    return records


def say(log: TextIO | None, line: str) -> None:
    if log is not None:
        print(line, file=log, flush=True)


def read_progress(path: Path | None, run_key: str) -> dict[tuple[str, str], dict[str, Any]]:
    if path is None or not path.is_file():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interruption
            continue
        if entry.get("run") == run_key:
            done[(entry["record"]["image"], entry["method"])] = entry["record"]
    return done


def append_progress(path: Path | None, run_key: str, method: str, record: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps({"run": run_key, "method": method, "record": record}) + "\n")


def summarise(records: dict[str, list[dict[str, Any]]], plan: Plan) -> dict[str, Any]:
    """The per-method sections and the run's settings, JSON-ready (the model's identity and the sample are
    added by the caller)."""
    names = [s.name for s in plan.stages]
    stage = names[VERDICT_STAGE_INDEX]
    return {
        "cascade": [{"stage": s.name, "randomised": list(s.modules)} for s in plan.stages],
        "verdict_rule": verdict_rule(stage),
        "verdict_threshold": PASS_BELOW,
        "randomisation_seed": plan.seed,
        "explained_class": "the class the trained model predicts for the image (the page's default view)",
        "road": {"percentiles_kept": list(plan.percentiles),
                 "removed_percent": [100 - p for p in plan.percentiles],
                 "target": "calibrated probability of the explained class",
                 "imputation": "noisy linear imputation (pytorch-grad-cam ROAD), on the model's standardised input",
                 "ties": "pixels ranked with equal values ordered at random (seeded), so each level removes its share",
                 "combined": "(mean LeRF change - mean MoRF change) / 2 over the levels: higher is more faithful"},
        "plan": {m: {"images_per_class": plan.per_class[m], "cascade_stages": names[:plan.n_stages[m]]}
                 for m in plan.methods},
        "methods": {m: summarise_method(r, names, seed=plan.seed) for m, r in records.items()
                    if r and m != EDGES},
        "controls": {m: summarise_method(r, names, seed=plan.seed) for m, r in records.items() if r and m == EDGES},
    }


def default_plan(model: torch.nn.Module, methods: Sequence[str], per_class: int, slow_per_class: int,
                 slow_stages: int, seed: int, percentiles: Sequence[int] = ROAD_PERCENTILES,
                 control: bool = True) -> Plan:
    """Every chosen method on ``per_class`` images of each class through the whole cascade; the slow ones
    (Score-CAM: a forward pass per feature channel) on fewer images and only the top ``slow_stages``
    stages, which include the verdict's stage."""
    stages = cascade_stages(model)
    fns = {m: page_map(m) for m in methods}
    if control:
        fns[EDGES] = edge_map
    slow_stages = max(slow_stages, VERDICT_STAGE_INDEX + 1)
    return Plan(methods=fns, stages=stages,
                per_class={m: slow_per_class if m in SLOW_METHODS else per_class for m in fns},
                n_stages={m: min(slow_stages, len(stages)) if m in SLOW_METHODS else len(stages) for m in fns},
                percentiles=tuple(percentiles), seed=seed)


def run_key(weights_sha: str, files: Sequence[str], plan: Plan) -> str:
    """Identifies a run's settings: progress lines of another model, sample or plan are not reused."""
    text = json.dumps([weights_sha, list(files), [s.name for s in plan.stages], plan.per_class, plan.n_stages,
                       list(plan.percentiles), plan.seed, MAPS_REVISION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the command ----------------------------------------------------------------------------------------------------


def assemble_report(records: dict[str, list[dict[str, Any]]], plan: Plan, cases: list[Case], sample: dict[str, Any],
                    model_info: dict[str, Any], seconds: float) -> dict[str, Any]:
    """explanations.json: the model, how the images were drawn, the machine, the reference lung area and
    every method's summary."""
    from covidviz.evaluation.measures.lung_reading import lung_energy_summary

    y = np.array([c.true_class for c in cases])
    area = np.array([lung_energy(np.ones((8, 8), np.float32), c.lungs) if c.lungs is not None else np.nan
                     for c in cases])
    return {
        **model_info,
        "sample": {**sample, "n_images": len(cases), "stratified_by": "true class",
                   "by_class": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
                   "slow_methods": {m: {"n_images": len(records[m]), "images_per_class": plan.per_class[m]}
                                    for m in plan.methods if m in SLOW_METHODS},
                   "lungs_found": int(sum(c.lungs is not None for c in cases))},
        "machine": machine(),
        "elapsed_seconds_this_invocation": round(seconds, 1),
        "lung_area_share": lung_energy_summary({"x": (y, area)})["x"],
        **summarise(records, plan),
    }


def explain_check(weights_dir: str | Path, data_dir: str | Path, out: str | Path | None = None, images: int = 30,
                  slow_images: int = 6, slow_stages: int = 2, seed: int = 0, methods: Sequence[str] | None = None,
                  percentiles: Sequence[int] = ROAD_PERCENTILES, log: TextIO | None = None) -> dict[str, Any]:
    """Run the checks on the model in ``weights_dir`` and write ``explanations.json`` (default
    ``weights_dir/eval/``). ``images`` and ``slow_images`` are totals, split evenly over the classes."""
    from covidviz.io.loading import load_xray_file
    from covidviz.model.predictor import Predictor
    from covidviz.model.preprocessing import model_batch

    weights_dir, data_dir = Path(weights_dir), Path(data_dir)
    out = Path(out) if out else weights_dir / "eval" / "explanations.json"
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown CAM method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    per_class, slow_per_class = max(1, images // len(CLASSES)), max(1, slow_images // len(CLASSES))
    predictor = Predictor(weights_dir)
    paths, labels, sample = sample_files(weights_dir, data_dir, per_class, seed)
    prepared = predictor.prepare([load_xray_file(p).pixels for p in paths])
    cases = [Case(name=name, batch=torch.from_numpy(model_batch([p.image], predictor.input_size)), true_class=label,
                  lungs=p.lungs if p.lungs_found else None)
             for name, p, label in zip(sample["files"], prepared, labels)]
    plan = default_plan(predictor.model, methods, per_class, slow_per_class, slow_stages, seed, percentiles)
    key = run_key(predictor.sidecar["weights_sha256"], sample["files"], plan)
    progress = out.with_name(out.stem + ".progress.jsonl")
    say(log, f"explain-check: {len(cases)} images ({sample['source']}); methods {', '.join(plan.methods)}; "
              f"{torch.get_num_threads()} torch thread(s); progress in {progress} (run {key})")
    start = time.perf_counter()
    records = run_check(predictor.model, cases, plan, predictor.temperature, progress, key, log)
    model_info = {"weights_sha256": predictor.sidecar["weights_sha256"], "model": predictor.sidecar.get("name", ""),
                  "input_size": predictor.input_size, "maps_revision": MAPS_REVISION}
    report = assemble_report(records, plan, cases, {**sample, "seed": seed}, model_info,
                             time.perf_counter() - start)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    progress.unlink(missing_ok=True)
    say(log, f"wrote {out}")
    return report
