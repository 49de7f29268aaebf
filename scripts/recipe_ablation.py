"""Which training recipe helped: models from different recipes measured on the same validation films.

For each model, on every validation film (never test or external ones, so nothing is chosen by them):
macro F1 under argmax, COVID-19 ROC AUC within SIIM (a source holding COVID-19 and other films alike, so
source cannot stand in for class), and the median share of the predicted class's Grad-CAM energy inside the
lung mask, beside what a map spread evenly over the field would put there; 95% bootstrap intervals and paired
differences against the first model (:mod:`covidviz.evaluation.artifacts.ablation_artifact`). A model is a
weights folder (its sidecar names the architecture and input size) or a run checkpoint with ``:ARCH:SIZE``;
``+lung-pooling`` after either measures the same weights with the feature map averaged over the cells that touch
the lung mask instead of the whole map (the decision then reads the lungs alone; no retraining).
The lung fields are prepared once, by the ``--weights`` folder's segmenter, and cached under ``--cache``.
Usage (the model card's table: ``--out weights``, then ``python -m covidviz facts``):

    python scripts/recipe_ablation.py --data ../shared/cxr --out weights \\
        --model "128 px lung field (v2)=weights/history/v2" \\
        --model "256 px, acquisition 0.5=~/covidviz-runs/v4-256/best.pt:densenet121:256" \\
        --model "256 px, stride 16, acquisition 0.5=weights"

Prints one Markdown row per model, then JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one

LUNG_POOLING = "+lung-pooling"


def load_model(spec: str) -> tuple[dict, object, int]:
    """``NAME=FOLDER`` or ``NAME=CHECKPOINT:ARCH:SIZE`` to the row's description, the model and its input size;
    a trailing ``+lung-pooling`` measures the same weights pooling over the lungs only (no retraining)."""
    import torch

    from covidviz.evaluation.artifacts.ablation_artifact import shift_flips
    from covidviz.model.network import build_model
    from covidviz.model.weights import load_weights

    name, rest = spec.split("=", 1)
    pooling = "lungs" if rest.endswith(LUNG_POOLING) else "image"
    rest = rest.removesuffix(LUNG_POOLING)
    if Path(rest).expanduser().is_dir():
        model, sidecar = load_weights(Path(rest).expanduser())
        size = int(sidecar["input_size"])
        meta = {"name": name, "source": rest, "architecture": sidecar.get("architecture", "densenet121"),
                "input_size": size, "weights_sha256": sidecar["weights_sha256"], "pooling": pooling}
        if pooling == "image" and (flips := shift_flips(Path(rest).expanduser())) is not None:
            meta["shift"] = flips
        return meta, model.eval(), size
    checkpoint, arch, size = rest.rsplit(":", 2)
    model = build_model(3, arch)
    blob = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    source = "/".join(Path(checkpoint).parts[-2:])
    return ({"name": name, "source": source, "architecture": arch, "input_size": int(size),
             "epoch": blob.get("epoch"), "pooling": pooling}, model.eval(), int(size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/cxr")
    parser.add_argument("--weights", default="weights", help="whose split and lung segmenter to use")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER|CHECKPOINT:ARCH:SIZE",
                        help="in order; differences are against the first")
    parser.add_argument("--out", help="a weights folder: write its eval/ablation.json")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "covidviz" / "ablation-val.npz"))
    args = parser.parse_args()
    if not args.model:
        parser.error("name at least one --model")

    from covidviz.data.collection import load_prepared
    from covidviz.evaluation.artifacts.ablation_artifact import ablation_report, read_validation, write_ablation
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.lungs.segmenter import load_segmenter

    data, weights = Path(args.data), Path(args.weights)
    records = records_for_splits(data, weights)["val"]
    cache = Path(args.cache)
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        assert list(stored["files"]) == [r.file for r in records], f"{cache} holds other films: delete it"
        images, lungs, found = stored["images"], stored["lungs"], stored["found"]
    else:
        prepared = load_prepared(data, records, load_segmenter(weights), dtype=np.uint8)
        images, lungs, found = prepared.images, prepared.lungs, prepared.lungs_found
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, images=images, lungs=lungs, found=found, files=np.array([r.file for r in records]))
    truth = np.array([r.target for r in records])
    siim = np.array([r.source == "SIIM" for r in records])
    even = float(np.median([m.mean() for m, ok in zip(lungs, found) if ok]))
    rows = []
    print(f"validation: {len(records)} films; an even map puts a median {even:.2f} of its energy in the lungs")
    for spec in args.model:
        meta, model, size = load_model(spec)
        reading = read_validation(model, images, lungs, found, size, meta["pooling"])
        rows.append((meta, reading))
        print(f"read: {meta['name']} ({reading.feature_map[0]} x {reading.feature_map[1]} map)", flush=True)
    report = ablation_report(rows, truth, siim, even, args.bootstrap)
    print("| recipe | map | validation macro-F1 | within-SIIM COVID-19 AUC | lung energy (median) |")
    print("|---|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['name']} | {row['feature_map'][0]} x {row['feature_map'][1]} | {row['macro_f1']['value']:.3f} | "
              f"{row['siim_covid_auc']['value']:.3f} | {row['lung_energy_median']['value']:.2f} |")
    if args.out:
        print(f"wrote {write_ablation(args.out, report)}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
