"""Which part of the digitised-film look moves a model's class: each of its five parts applied alone.

``measure-shift`` and the recipe ablation count the class flips the whole digitised-film transform causes.
This takes the same validation films, seed and per-film random draws, and applies the transform's parts one
at a time (:data:`covidviz.data.acquisition.DIGITISED_PARTS`: characteristic curve, scanner blur, grain,
uneven light, film edge), then all five (the ablation's digitised-film count, as a check), through the upload
path: the part acts on the whole film, the shipped segmenter finds the lungs on the result. Flips are counted
under argmax against the film read clean, with the direction of each (e.g. normal to COVID-19). Validation
films only. Usage:

    python scripts/digitised_parts.py --data ../shared/cxr \\
        --model "v2=weights" --model "stride-16 candidate=weights/comparison/densenet121_os16"

``--model`` takes what the recipe ablation takes (a weights folder, or ``CHECKPOINT:ARCH:SIZE``). Prints a
Markdown table, then JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside it, not an installed one
sys.path.insert(0, str(ROOT / "scripts"))

ALL = "all five"


def variants() -> dict[str, tuple[str, ...]]:
    """Each part alone, then all five together (the whole transform)."""
    from covidviz.data.acquisition import DIGITISED_PARTS
    return {**{part: (part,) for part in DIGITISED_PARTS}, ALL: DIGITISED_PARTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/cxr")
    parser.add_argument("--weights", default="weights", help="whose split and lung segmenter to use")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER|CHECKPOINT:ARCH:SIZE")
    parser.add_argument("--films", type=int, default=300, help="measure-shift's sample size (default 300)")
    parser.add_argument("--seed", type=int, default=20, help="measure-shift's seed (default 20)")
    args = parser.parse_args()
    if not args.model:
        parser.error("name at least one --model")

    from recipe_ablation import load_model, upload_fields

    from covidviz import CLASSES
    from covidviz.data.acquisition import digitised_film
    from covidviz.evaluation.artifacts.ablation_artifact import read_validation
    from covidviz.evaluation.artifacts.shift_artifact import CLEAN
    from covidviz.evaluation.artifacts.shift_run import film_rng, sample_validation
    from covidviz.evaluation.documents.shift_facts import STRONG_SHIFT
    from covidviz.io.loading import load_xray_file
    from covidviz.lungs.segmenter import load_segmenter

    data, weights = Path(args.data), Path(args.weights)
    segmenter = load_segmenter(weights)
    records, _ = sample_validation(data, weights, args.films, args.seed)
    grays = [load_xray_file(data / r.file).pixels for r in records]
    fields = {}
    for name, parts in {CLEAN: None, **variants()}.items():
        shifted = grays if parts is None else [
            digitised_film(g, film_rng(args.seed, r.file, STRONG_SHIFT), 1.0, parts=parts)
            for g, r in zip(grays, records)]
        fields[name] = upload_fields(shifted, segmenter)
        print(f"prepared: {name}", flush=True)
    report = {"films": len(records), "seed": args.seed, "rule": "argmax", "models": []}
    for spec in args.model:
        label, source = spec.split("=", 1)
        _, model, size = load_model(source)
        classes = {name: read_validation(model, *f, size).probs.argmax(1) for name, f in fields.items()}
        clean = classes.pop(CLEAN)
        row = {"name": label, "source": source, "flipped": {}, "directions": {}}
        for name, found in classes.items():
            moved = Counter(f"{CLASSES[a]} to {CLASSES[b]}" for a, b in zip(clean, found) if a != b)
            row["flipped"][name] = int(sum(moved.values()))
            row["directions"][name] = dict(moved.most_common())
        report["models"].append(row)
        print(f"read: {label}", flush=True)
    names = list(variants())
    print(f"| model | {' | '.join(names)} |  (flips of {len(records)} validation films, argmax)")
    print("|---|" + "---|" * len(names))
    for row in report["models"]:
        print(f"| {row['name']} | " + " | ".join(str(row["flipped"][n]) for n in names) + " |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
