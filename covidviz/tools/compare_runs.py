"""``python -m covidviz compare-train``: train one comparison backbone, or one cross-validation fold of the
DenseNet-121, on the shared recipe, and write its evaluation artifacts. Resumable at every level: a finished
run is skipped, an interrupted one continues from its last epoch, prepared images are shared by all runs.

Layout under ``--runs`` (outside the work tree): ``<arch>/`` for a backbone, ``cv/fold-<k>/`` for a fold; each
holds the run's checkpoints and ``export/`` (weights, sidecar, split and ``eval/`` as in ``weights/``).
"""

from __future__ import annotations

from pathlib import Path

from covidviz.evaluation.artifacts.run_eval import evaluate_run
from covidviz.model.sidecar import update_sidecar
from covidviz.paths import WEIGHTS_DIR
from covidviz.training.recipes import REDUCED_CPU, Recipe
from covidviz.verified import read_sidecar


def run_folder(runs: Path, arch: str, fold: int | None) -> Path:
    return runs / "cv" / f"fold-{fold}" if fold is not None else runs / arch


def compare_train(data_dir: str | Path, runs: str | Path, arch: str, fold: int | None = None,
                  recipe: Recipe = REDUCED_CPU, lungs: str | Path = WEIGHTS_DIR, folds: int = 5,
                  n_boot: int = 1000, threads: int | None = None, limit: int | None = None) -> Path:
    """Train (or resume) one run and write ``export/eval/``; return the export folder. Backbones keep the
    shipped model's split (same test images, so differences can be paired); folds split the pool anew."""
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.model.weights import load_weights
    from covidviz.training.config import TrainConfig
    from covidviz.training.prepare import prepared_images, training_segmenter
    from covidviz.training.train import train

    runs = Path(runs)
    folder = run_folder(runs, arch, fold)
    export = folder / "export"
    metrics = export / "eval" / "metrics.json"
    if metrics.is_file() and (export / "model.safetensors").is_file():
        import json
        if json.loads(metrics.read_text()).get("weights_sha256") == read_sidecar(export).get("weights_sha256"):
            print(f"{folder}: already trained and evaluated")
            return export
    cfg = TrainConfig.from_recipe(recipe, data_dir=str(data_dir), run_dir=str(folder), export_dir=str(export),
                                  segmenter_dir=str(lungs), arch=arch, fold=fold, folds=folds, prepared_dir=str(runs),
                                  previous_split=None if fold is not None else str(Path(lungs) / "split.csv"),
                                  threads=threads, limit=limit)
    train(cfg, resume=(folder / "last.pt").is_file())
    update_sidecar(export, recipe_details=recipe.as_dict())
    model, _ = load_weights(export, expect=arch)
    chosen = records_for_splits(data_dir, export)
    chosen.pop("train")
    if limit:
        chosen = {name: recs[:limit] for name, recs in chosen.items()}
    segmenter = training_segmenter(cfg)
    sets = {name: (recs, prepared_images(cfg, folder, name, recs, segmenter)) for name, recs in chosen.items()}
    report = evaluate_run(model, export, sets, n_boot)
    for name, block in report["splits"].items():
        s = block["overall"]["summary"]
        print(f"{folder.name} {name}: n={block['overall']['n']} macro-F1 {s['macro_f1']['value']:.3f} "
              f"accuracy {s['accuracy']['value']:.3f}", flush=True)
    return export
