"""Which training recipe helped: models from different recipes measured on the same validation films.

For each model, on every validation film (never test or external ones, so nothing is chosen by them):
macro F1 under argmax, COVID-19 ROC AUC within SIIM (a source holding COVID-19 and other films alike, so
source cannot stand in for class), and the median share of the predicted class's Grad-CAM energy inside the
lung mask, beside what a map spread evenly over the field would put there; 95% bootstrap intervals and paired
differences against the first model (:mod:`covidviz.evaluation.artifacts.ablation_artifact`). A model is a
weights folder (its sidecar names the architecture and input size) or a run checkpoint with ``:ARCH:SIZE``;
``+lung-pooling`` after either measures the same weights with the feature map averaged over the cells that touch
the lung mask instead of the whole map (the decision then reads the lungs alone; no retraining);
``+low-pass:SIGMA`` blurs each lung field by a Gaussian of SIGMA pixels first (a low-pass front end, no retraining);
``+views:flip`` averages the field and its mirror, ``+views:crops`` the field and five crops of 0.9 of its side
(four corners and the centre): test-time augmentation, one forward pass per view.
Sources joined by ``&`` are read as one ensemble: the members' probabilities averaged, and their maps (each scaled
to unit energy) for the ensemble's class; it costs one forward pass per member. A weight average of fine-tunes
(``python -m covidviz average-weights``, one model's cost) is a checkpoint like any other.
Each model's class flips are counted on ``measure-shift``'s validation sample, read clean and through each
acquisition transform, under argmax. The lung fields are prepared once, by the ``--weights`` folder's segmenter,
and cached under ``--cache``; so is each row's reading (``~/.cache/covidviz/ablation-rows``, keyed by the weights,
how they are read and the films), so adding a row to the table reads only that row. Where earlier rows'
checkpoints are gone (a new machine), ``--append`` adds rows to the stored table: the first ``--model`` is read
again and must reproduce the stored first row, so every added difference is paired as in one run.
Usage (the model card's table: ``--out weights``, then ``python -m covidviz facts``):

    python scripts/recipe_ablation.py --data ../shared/cxr --out weights \\
        --model "128 px lung field (v2)=weights/history/v2" \\
        --model "256 px, acquisition 0.5=~/covidviz-runs/v4-256/best.pt:densenet121:256" \\
        --model "256 px, stride 16, acquisition 0.5=weights" \\
        --model "the same, low-pass front end=weights+low-pass:1.0" \\
        --model "v3 and the adult fine-tune, ensembled=weights&~/covidviz-runs/adult60/best.pt:densenet121_os8:128"

Prints one Markdown row per model, then JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one

if TYPE_CHECKING:
    from covidviz.lungs.segmenter import LungSegmenter

LUNG_POOLING, LOW_PASS, VIEWS_OPTION = "lung-pooling", "low-pass", "views"
CACHE = Path.home() / ".cache" / "covidviz"


def parse_spec(spec: str) -> tuple[str, str, dict]:
    """``NAME=SOURCE[+lung-pooling][+low-pass:SIGMA][+views:flip|crops]`` to the name, the source (a weights
    folder or ``CHECKPOINT:ARCH:SIZE``) and how to read it: pooled over the lungs, the lung field blurred by a
    Gaussian of SIGMA canonical (256 px) pixels before the model (a low-pass front end, tried without
    retraining), and test-time views averaged (the field and its mirror; or the field and five crops of 0.9)."""
    name, rest = spec.split("=", 1)
    source, *options = rest.split("+")
    from covidviz.evaluation.artifacts.ablation_artifact import TEST_TIME_VIEWS
    reading = {"pooling": "image", "low_pass_sigma": None}
    for option in options:
        if option == LUNG_POOLING:
            reading["pooling"] = "lungs"
        elif option.startswith(LOW_PASS + ":"):
            reading["low_pass_sigma"] = float(option.split(":", 1)[1])
        elif option.startswith(VIEWS_OPTION + ":") and option.split(":", 1)[1] in TEST_TIME_VIEWS:
            reading["views"] = option.split(":", 1)[1]  # only when asked: earlier rows keep their cache keys
        else:
            raise SystemExit(f"unknown reading option +{option} in {spec!r}: +{LUNG_POOLING}, +{LOW_PASS}:SIGMA, "
                             f"+{VIEWS_OPTION}:{'|'.join(TEST_TIME_VIEWS)}")
    return name, source, reading


def load_ensemble(source: str) -> tuple[dict, object, int]:
    """A source to the row's description, its model (a list of members for ``A&B...``) and its input size."""
    if "&" not in source:
        return load_model(source)
    loaded = [load_model(member) for member in source.split("&")]
    sizes = {size for _, _, size in loaded}
    if len(sizes) > 1:
        raise SystemExit(f"the members of {source!r} read different input sizes {sorted(sizes)}: ensemble models "
                         "of one input size")
    first = loaded[0][0]
    return ({"source": " & ".join(meta["source"] for meta, _, _ in loaded), "architecture": first["architecture"],
             "input_size": first["input_size"], "members": [meta for meta, _, _ in loaded]},
            [model for _, model, _ in loaded], loaded[0][2])


def load_model(source: str) -> tuple[dict, object, int]:
    """A weights folder, or ``CHECKPOINT:ARCH:SIZE``, to the row's description, the model and its input size."""
    import torch

    from covidviz.model.network import build_model
    from covidviz.model.provenance import WEIGHT_AVERAGE
    from covidviz.model.weights import load_weights

    if Path(source).expanduser().is_dir():
        model, sidecar = load_weights(Path(source).expanduser())
        size = int(sidecar["input_size"])
        return ({"source": source, "architecture": sidecar.get("architecture", "densenet121"), "input_size": size,
                 "weights_sha256": sidecar["weights_sha256"]}, model.eval(), size)
    checkpoint, arch, size = source.rsplit(":", 2)
    model = build_model(3, arch)
    blob = torch.load(Path(checkpoint).expanduser(), map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    last = (blob.get("stages") or [{}])[-1]
    averaged = {"averaged": len(last["members"])} if last.get("stage") == WEIGHT_AVERAGE else {}
    if blob.get("epoch") is None and not averaged and last.get("stage"):
        averaged = {"made_by": last["stage"]}  # not a run's epoch: what made it (scripts/refit_head.py: "head refit")
    return ({"source": "/".join(Path(checkpoint).parts[-2:]), "architecture": arch, "input_size": int(size),
             "epoch": blob.get("epoch"), **averaged}, model.eval(), int(size))


def low_pass(images: np.ndarray, sigma: float | None) -> np.ndarray:
    """uint8 lung fields blurred by a Gaussian of ``sigma`` pixels (unchanged for None)."""
    if not sigma:
        return images
    import cv2
    return np.stack([np.clip(np.round(cv2.GaussianBlur(im.astype(np.float32), (0, 0), sigma)), 0, 255)
                     .astype(np.uint8) for im in images])


def row_key(source: str, reading: dict, films: list[str]) -> str:
    """What a row's cached reading depends on: the weights (a folder's sidecar hash, a checkpoint's size and
    time; an ensemble's members'), how they are read, and ``films`` (the films and whatever else prepared them)."""
    import hashlib
    if "&" in source:
        members = [row_key(member, reading, films) for member in source.split("&")]
        return hashlib.sha256(json.dumps(["ensemble", members]).encode()).hexdigest()[:20]
    path = Path(source.rsplit(":", 2)[0]).expanduser()
    if Path(source).expanduser().is_dir():
        from covidviz.verified import read_sidecar
        weights = read_sidecar(Path(source).expanduser())["weights_sha256"]
    else:
        weights = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}:{source.rsplit(':', 2)[1:]}"
    blob = json.dumps([weights, reading, films])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_fields(cache: Path, files: list[str], read: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Prepared lung fields (``images``, ``lungs``, ``found``) from ``cache`` when it holds these films (``files``,
    ending with the segmenter that prepared them), else ``read()``, stored there for the next run."""
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        if list(stored["files"]) == files:
            return {key: stored[key] for key in ("images", "lungs", "found")}
        print(f"{cache} holds other films: preparing them again")
    fields = read()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, files=np.array(files), **fields)
    return fields


def upload_fields(grays: list[np.ndarray], segmenter: LungSegmenter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole films to what the upload path reads, as ``read_validation`` takes it: uint8 lung fields, their lung
    masks (empty where none was found) and whether a plausible pair of lungs was found."""
    from covidviz.model.preprocessing import prepare
    items = [item for start in range(0, len(grays), 16) for item in prepare(grays[start:start + 16], segmenter)]
    return (np.stack([np.round(item.image * 255).astype(np.uint8) for item in items]),
            np.stack([item.lungs if item.lungs is not None else np.zeros(item.image.shape, bool) for item in items]),
            np.array([item.lungs_found for item in items]))


def shifted_fields(data: Path, weights: Path, segmenter: LungSegmenter, films: int, seed: int
                   ) -> tuple[list[str], dict[str, np.ndarray]]:
    """``measure-shift``'s validation sample (same films, same per-film transform seeds, full strength), clean
    and through each acquisition transform, as uint8 lung fields prepared by the upload path: the transform
    acts on the whole film, the segmenter then finds the lungs on what it made. Rows: transform-major."""
    from covidviz.data.acquisition import TRANSFORMS
    from covidviz.evaluation.artifacts.shift_artifact import CLEAN
    from covidviz.evaluation.artifacts.shift_run import film_rng, sample_validation
    from covidviz.io.loading import load_xray_file

    records, _ = sample_validation(data, weights, films, seed)
    names = (CLEAN, *TRANSFORMS)
    keys = [f"{name}/{r.file}" for name in names for r in records] + [f"lungs:{segmenter.sha256}"]

    def read() -> dict[str, np.ndarray]:
        grays = [load_xray_file(data / r.file).pixels for r in records]
        parts = []
        for name in names:
            shifted = grays if name == CLEAN else [TRANSFORMS[name](g, film_rng(seed, r.file, name), 1.0)
                                                   for g, r in zip(grays, records)]
            parts.append(upload_fields(shifted, segmenter))
            print(f"prepared the sample: {name}", flush=True)
        return {key: np.concatenate([part[i] for part in parts]) for i, key in enumerate(("images", "lungs", "found"))}

    return list(names), cached_fields(CACHE / f"ablation-shift-{films}-{seed}.npz", keys, read)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/cxr")
    parser.add_argument("--weights", default="weights", help="whose split and lung segmenter to use")
    parser.add_argument("--model", action="append", default=[],
                        metavar="NAME=SOURCE[&SOURCE...][+lung-pooling][+low-pass:SIGMA][+views:flip|crops]",
                        help="in order; differences are against the first")
    parser.add_argument("--out", help="a weights folder: write its eval/ablation.json")
    parser.add_argument("--append", action="store_true",
                        help="add these models' rows to --out's table instead of writing it anew (for when earlier "
                             "rows' checkpoints are gone): the first --model must reproduce its first row")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cache", default=str(CACHE / "ablation-val.npz"))
    parser.add_argument("--shift-films", type=int, default=300, help="measure-shift's sample size (default 300)")
    parser.add_argument("--shift-seed", type=int, default=20, help="measure-shift's seed (default 20)")
    args = parser.parse_args()
    if not args.model:
        parser.error("name at least one --model")
    if args.append and not args.out:
        parser.error("--append adds rows to --out's table: name --out")

    from covidviz.data.collection import load_prepared
    from covidviz.evaluation.artifacts.ablation_artifact import (
        TEST_TIME_VIEWS,
        TestTimeView,
        ValidationReading,
        ablation_report,
        extend_ablation,
        flips_against_clean,
        load_ablation,
        read_validation,
        write_ablation,
    )
    from covidviz.evaluation.artifacts.evaluate import records_for_splits
    from covidviz.lungs.segmenter import load_segmenter

    data, weights = Path(args.data), Path(args.weights)
    records = records_for_splits(data, weights)["val"]
    segmenter = load_segmenter(weights)

    def read_val() -> dict[str, np.ndarray]:
        prepared = load_prepared(data, records, segmenter, dtype=np.uint8)
        return {"images": prepared.images, "lungs": prepared.lungs, "found": prepared.lungs_found}

    val = cached_fields(Path(args.cache), [r.file for r in records] + [f"lungs:{segmenter.sha256}"], read_val)
    images, lungs, found = val["images"], val["lungs"], val["found"]
    transforms, shifted = shifted_fields(data, weights, segmenter, args.shift_films, args.shift_seed)
    truth = np.array([r.target for r in records])
    siim = np.array([r.source == "SIIM" for r in records])
    even = float(np.median([m.mean() for m, ok in zip(lungs, found) if ok]))
    rows = []
    print(f"validation: {len(records)} films; an even map puts a median {even:.2f} of its energy in the lungs")
    # what every row's reading also depends on: the films, the shift sample and the segmenter that found the lungs
    films = [r.file for r in records] + [f"shift:{args.shift_films}:{args.shift_seed}", f"lungs:{segmenter.sha256}"]
    for spec in args.model:
        name, source, how = parse_spec(spec)
        meta, model, size = load_ensemble(source)
        meta = {"name": name, **meta, "pooling": how["pooling"],
                **({"low_pass_sigma": how["low_pass_sigma"]} if how["low_pass_sigma"] else {}),
                **({"views": how["views"], "view_passes": len(TEST_TIME_VIEWS[how["views"]])}
                   if "views" in how else {})}
        cached = CACHE / "ablation-rows" / f"{row_key(source, how, films)}.npz"
        if cached.is_file():  # the same weights read the same way on the same films: read before
            stored = np.load(cached)
            reading = ValidationReading(stored["probs"], stored["lung_energy"], tuple(int(n) for n in stored["grid"]))
            labels = stored["shift_labels"]
        else:
            views = TEST_TIME_VIEWS[how["views"]] if "views" in how else (TestTimeView(),)
            reading = read_validation(model, low_pass(images, how["low_pass_sigma"]), lungs, found, size,
                                      how["pooling"], views)
            labels = read_validation(model, low_pass(shifted["images"], how["low_pass_sigma"]), shifted["lungs"],
                                     shifted["found"], size, how["pooling"], views
                                     ).probs.argmax(1).reshape(len(transforms), -1)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, probs=reading.probs, lung_energy=reading.lung_energy, grid=np.array(reading.feature_map),
                     shift_labels=labels)
        meta["shift"] = flips_against_clean(dict(zip(transforms, labels)), transforms[0], args.shift_seed)
        rows.append((meta, reading))
        print(f"read: {meta['name']} ({reading.feature_map[0]} x {reading.feature_map[1]} map); flips "
              f"{meta['shift']['flipped']}", flush=True)
    report = ablation_report(rows, truth, siim, even, args.bootstrap, sources=np.array([r.source for r in records]))
    print("| recipe | map | validation macro-F1 | within-SIIM COVID-19 AUC | lung energy (median) |")
    print("|---|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['name']} | {row['feature_map'][0]} x {row['feature_map'][1]} | {row['macro_f1']['value']:.3f} | "
              f"{row['siim_covid_auc']['value']:.3f} | {row['lung_energy_median']['value']:.2f} |")
    if args.out:
        if args.append:
            stored = load_ablation(args.out)
            if stored is None:
                raise SystemExit(f"--append: {args.out} has no ablation table yet")
            report = extend_ablation(stored, report)
        print(f"wrote {write_ablation(args.out, report)}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
