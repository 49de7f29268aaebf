"""``python -m covidviz explain-check``: sanity, faithfulness and lung-focus checks of every heatmap method.

Progress lines go to stdout; pytorch-grad-cam's own progress bars (Ablation-CAM, Score-CAM) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covidviz.paths import DEFAULT_DATA_DIR, WEIGHTS_DIR


def _explain_check(args: argparse.Namespace) -> int:
    import torch

    from covidviz.evaluation.explanation_check.explanation_run import explain_check
    from covidviz.evaluation.explanation_check.explanations import verdict_word
    from covidviz.explain.cam.methods import METHODS
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [m for m in args.methods or () if m not in METHODS]
    if unknown:
        print(f"unknown method(s): {', '.join(unknown)}; choose from: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    if args.part in ("all", "localisation"):
        from covidviz.evaluation.explanation_check.localisation import BOXES_FILE
        split = Path(args.split) if args.split else Path(args.weights) / "split.csv"
        has_boxes = (Path(args.data) / BOXES_FILE).is_file()
        if not has_boxes and args.part == "localisation":
            print(f"no {BOXES_FILE} in {args.data}: the localisation check needs the collection's boxes",
                  file=sys.stderr)
            return 2
        if not has_boxes:
            print(f"no {BOXES_FILE} in {args.data}: localisation skipped")
        elif not split.is_file():
            print(f"no split file {split}: the localisation check tells the films the model trained on from those "
                  f"it never saw by it; pass --split with the split the model was trained with (comparison "
                  f"models share the shipped weights/split.csv)", file=sys.stderr)
            return 2
        else:
            _localisation(args, split)
    if args.part == "localisation":
        return 0
    report = explain_check(args.weights, args.data, args.out, images=args.images, slow_images=args.slow_images,
                           slow_stages=args.slow_stages, seed=args.seed, methods=args.methods,
                           percentiles=args.percentiles, log=sys.stdout)
    for name, section in {**report["methods"], **report["controls"]}.items():
        stage = section["deciding_stage"]
        rho = next((s["spearman"] for s in section["randomisation"] if s["stage"] == stage), {"mean": None})
        energy = section["lung_energy"]["median"]
        print(f"{name:>16}: {verdict_word(section):<16} highest rank corr. "
              f"{'n/a' if rho['mean'] is None else format(rho['mean'], '.2f')} ({stage}), ROAD "
              f"{section['road']['combined']['mean']:+.3f}, lung energy "
              f"{'n/a' if energy is None else format(energy, '.2f')}, "
              f"{section['seconds_per_map']['median']:.2f} s per map ({section['n_images']} images)")
    return 0


def _localisation(args: argparse.Namespace, split: Path) -> None:
    from covidviz.evaluation.explanation_check.localisation_report import FILE_NAME
    from covidviz.evaluation.explanation_check.localisation_run import localisation_check
    out = args.localisation_out or (Path(args.out).with_name(FILE_NAME) if args.out else None)  # beside --out
    report = localisation_check(args.weights, args.data, out, methods=args.methods,
                                slow_films=args.slow_films, seed=args.seed, limit=args.films, log=sys.stdout,
                                split=split)
    for name, groups in report["methods"].items():
        print(f"{name:>16}: " + "; ".join(
            f"{group} n={g['n_films']} peak in box {g['pointing']['value'] or 0:.0%}, box energy "
            f"{g['box_energy_median']['value'] or 0:.2f} vs even lung {g['even_lung_median']['value'] or 0:.2f}"
            for group, g in groups.items()))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("explain-check", help="randomisation, ROAD and lung-focus checks of every CAM method; "
                                             "writes weights/eval/explanations.json (resumable)")
    x.add_argument("--weights", default=str(WEIGHTS_DIR))
    x.add_argument("--data", default=str(DEFAULT_DATA_DIR),
                   help="folder with metadata.csv (default ../shared/cxr); examples/xrays is used without it")
    x.add_argument("--out", help="output file (default <weights>/eval/explanations.json)")
    x.add_argument("--images", type=int, default=30, help="images in all, split evenly over the classes")
    x.add_argument("--slow-images", type=int, default=6,
                   help="images for Score-CAM (a forward pass per feature channel), the first of each class")
    x.add_argument("--slow-stages", type=int, default=2, help="cascade stages for Score-CAM, from the head down")
    x.add_argument("--seed", type=int, default=0, help="the sample, the random weights and ROAD's noise")
    x.add_argument("--methods", nargs="+", help="CAM methods by display name (default: all)")
    x.add_argument("--percentiles", type=int, nargs="+", default=[10, 30, 50, 70, 90],
                   help="ROAD levels: percent of pixels kept (the rest removed)")
    x.add_argument("--part", choices=("all", "checks", "localisation"), default="all",
                   help="checks: randomisation, ROAD, lung energy (explanations.json); localisation: the pneumonia "
                        "maps against the radiologists' boxes in <data>/boxes.csv (localisation.json); all: both")
    x.add_argument("--slow-films", type=int, default=20, help="boxed films for Score-CAM in the localisation part")
    x.add_argument("--films", type=int, help="localisation: only the first N boxed films (to estimate the cost)")
    x.add_argument("--localisation-out", help="output file (default: localisation.json beside --out, else "
                                              "<weights>/eval/localisation.json)")
    x.add_argument("--split", help="localisation: the split file the model was trained with, to tell the films it "
                                   "trained on from those it never saw (default <weights>/split.csv)")
    x.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    x.set_defaults(func=_explain_check)
