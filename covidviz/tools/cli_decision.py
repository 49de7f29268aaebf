"""``python -m covidviz fit-decision``: the model's decision rule, fitted on validation predictions only."""

from __future__ import annotations

import argparse
from pathlib import Path

from covidviz.paths import DEFAULT_DATA_DIR, WEIGHTS_DIR


def _fit_decision(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.decision_artifact import decision_path, fit_decision, summary_lines
    report = fit_decision(args.weights, target=args.sensitivity, n_boot=args.bootstrap)
    print("\n".join(summary_lines(report)))
    print(f"wrote the rule into {args.weights}/model.json and the report to {decision_path(args.weights)}")
    if Path(args.data).is_dir():  # the gallery shows the errors of the rule the product uses: the new one
        from covidviz.evaluation.artifacts.gallery import build_gallery
        from covidviz.model.predictor import Predictor
        shown = build_gallery(Path(args.data), Path(args.weights), Predictor(args.weights))
        print(f"rebuilt the error gallery under the new rule: {shown} shippable errors")
    else:
        print(f"no data at {args.data}: the error gallery still shows the old rule's errors; rerun with --data")
    print("run `python -m covidviz facts` to regenerate the model card")
    return 0


def _measure_abstention(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.abstention_artifact import summarise, write_summary
    from covidviz.evaluation.artifacts.abstention_run import measure_per_film
    if not args.summary_only:
        print(f"wrote {measure_per_film(args.data, args.weights)}")
    print(f"wrote {write_summary(args.weights)}")
    for name, s in summarise(args.weights)["sets"].items():
        print(f"  {name:9s} n={s['n']:5d} abstained {s['abstained']:4d} ({s['rate']:.1%}; OOD {s['out_of_distribution']}, "
              f"no plausible lungs {s['no_plausible_lungs']}), of which the rule had right {s['abstained_right']}")
    return 0


def _fit_lung_floor(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.lung_floor import FLOOR_FILE, summary_lines
    from covidviz.evaluation.artifacts.lung_floor_run import fit_lung_floor
    report = fit_lung_floor(args.data, args.weights)
    print("\n".join(summary_lines(report)))
    print(f"wrote the floor and the flat-lung limit into {args.weights}/lungs/model.json and the report to {args.weights}/eval/{FLOOR_FILE}")
    print("run `python -m covidviz facts` to regenerate the model card")
    return 0


def _measure_shift(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.shift_artifact import summarise, summary_lines, write_summary
    sample = None
    if not args.summary_only:
        from covidviz.evaluation.artifacts.shift_run import measure_per_film
        path, sample = measure_per_film(args.data, args.weights, films=args.films, seed=args.seed)
        print(f"wrote {path} ({sample['films']} films x 7 passes in {sample['seconds']} s)")
    print(f"wrote {write_summary(args.weights, sample)}")
    print("\n".join(summary_lines(summarise(args.weights))))
    print("run `python -m covidviz facts` to regenerate the model card")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("fit-decision", help="fit the COVID-19 screening threshold on validation predictions, "
                       "record it in the sidecar and report it on test, external sets and CV folds")
    d.add_argument("--weights", default=str(WEIGHTS_DIR))
    d.add_argument("--sensitivity", type=float, default=0.90,
                   help="the validation COVID-19 sensitivity the threshold must keep (default 0.90)")
    d.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    d.add_argument("--data", default=str(DEFAULT_DATA_DIR),
                   help="the pool, to rebuild the error gallery under the new rule (skipped, with a warning, without)")
    d.set_defaults(func=_fit_decision)
    a = sub.add_parser("measure-abstention", help="run the model over validation, test and external films once: "
                       "per film OOD distance and lung plausibility, per set how often no class is given")
    a.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    a.add_argument("--weights", default=str(WEIGHTS_DIR))
    a.add_argument("--summary-only", action="store_true", help="recompute abstention.json from the per-film file")
    a.set_defaults(func=_measure_abstention)
    f = sub.add_parser("fit-lung-floor", help="fit, on validation films, how sure the lung segmenter must be of a "
                       "pair of lungs and how much of them may be flat for the model to give a class; record both and "
                       "measure them on test, external and non-chest images")
    f.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    f.add_argument("--weights", default=str(WEIGHTS_DIR))
    f.set_defaults(func=_fit_lung_floor)
    s = sub.add_parser("measure-shift", help="run the model over a seeded sample of validation films, clean and under "
                       "each acquisition transform: how often the class flips, and how much the OOD guard flags")
    s.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    s.add_argument("--weights", default=str(WEIGHTS_DIR))
    s.add_argument("--films", type=int, default=300, help="validation films, a third of each class (default 300)")
    s.add_argument("--seed", type=int, default=20, help="the sample's and the transforms' seed (default 20)")
    s.add_argument("--summary-only", action="store_true", help="recompute shift.json from the per-film file")
    s.set_defaults(func=_measure_shift)
