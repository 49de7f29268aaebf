"""Which training recipe helped: run checkpoints and the shipped model measured on the same validation films.

For each model, on every validation film (never test or external ones, so nothing is chosen by them):
macro F1 under argmax, COVID-19 ROC AUC within SIIM (a source holding COVID-19 and other films alike, so
source cannot stand in for class), and the median share of the predicted class's Grad-CAM energy inside the
lung mask, beside what a map spread evenly over the image would put there (the mask's share of the field).
The lung fields are prepared once, by the shipped segmenter, and cached under ``--cache``. Usage:

    python scripts/recipe_ablation.py --data ../shared/cxr \\
        --run "256 px, acquisition 0.5=~/covidviz-runs/v4-256/best.pt:densenet121:256" \\
        --run "256 px, stride 16=~/covidviz-runs/os16/best.pt:densenet121_os16:256"

Prints one Markdown row per model (the shipped one first), then JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def measure(model, images: np.ndarray, lungs: np.ndarray, found: np.ndarray, size: int, truth: np.ndarray,
            siim: np.ndarray) -> dict[str, float | int]:
    from covidviz import CLASSES
    from covidviz.evaluation.measures.metrics import macro_f1, roc_auc
    from covidviz.explain.cam.fast_gradcam import gradcam_all_classes
    from covidviz.lungs.field import lung_energy
    from covidviz.model.preprocessing import model_batch

    logits, shares = [], []
    for start in range(0, len(images), 32):
        chunk = slice(start, start + 32)
        result = gradcam_all_classes(model, model_batch(images[chunk].astype(np.float32) / 255, size))
        logits.append(result.logits)
        for maps, mask, ok, row in zip(result.maps, lungs[chunk], found[chunk], result.logits):
            shares.append(lung_energy(maps[int(np.argmax(row))], mask) if ok else float("nan"))
    logits, shares = np.concatenate(logits), np.array(shares)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    covid = CLASSES.index("covid")
    return {"films": int(len(truth)), "macro_f1": macro_f1(truth, probs.argmax(1), len(CLASSES)),
            "siim_covid_auc": roc_auc(truth[siim] == covid, probs[siim, covid]), "siim_films": int(siim.sum()),
            "lung_energy_median": float(np.nanmedian(shares)),
            "feature_map": list(result.maps.shape[2:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/cxr")
    parser.add_argument("--weights", default="weights", help="the shipped model (and its split and segmenter)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=CHECKPOINT:ARCH:SIZE")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "covidviz" / "ablation-val.npz"))
    args = parser.parse_args()
    import torch

    from covidviz.data.collection import load_prepared
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.lungs.segmenter import load_segmenter
    from covidviz.model.network import build_model
    from covidviz.model.weights import load_weights

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
    shipped, sidecar = load_weights(weights)
    models = [("shipped (128 px)", shipped.eval(), int(sidecar["input_size"]))]
    for spec in args.run:
        name, rest = spec.split("=", 1)
        checkpoint, arch, size = rest.rsplit(":", 2)
        model = build_model(3, arch)
        blob = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=True)
        model.load_state_dict(blob["model"])
        models.append((f"{name} (epoch {blob.get('epoch', '?')})", model.eval(), int(size)))
    rows = {}
    print(f"validation: {len(records)} films; an even map puts a median {even:.2f} of its energy in the lungs")
    print("| recipe | map | validation macro-F1 | within-SIIM COVID-19 AUC | lung energy (median) |")
    print("|---|---|---|---|---|")
    for name, model, size in models:
        rows[name] = measure(model, images, lungs, found, size, truth, siim)
        r = rows[name]
        print(f"| {name} | {r['feature_map'][0]} x {r['feature_map'][1]} | {r['macro_f1']:.3f} | "
              f"{r['siim_covid_auc']:.3f} ({r['siim_films']} films) | {r['lung_energy_median']:.2f} |", flush=True)
    print(json.dumps({"even_map_lung_share": even, "models": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
