"""``python -m covidviz fit-decision``: the model's decision rule, fitted on validation predictions only."""

from __future__ import annotations

import argparse

from covidviz.paths import WEIGHTS_DIR


def _fit_decision(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.decision_artifact import decision_path, fit_decision, summary_lines
    report = fit_decision(args.weights, target=args.sensitivity, n_boot=args.bootstrap)
    print("\n".join(summary_lines(report)))
    print(f"wrote the rule into {args.weights}/model.json and the report to {decision_path(args.weights)}; "
          "run `python -m covidviz facts` to regenerate the model card")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("fit-decision", help="fit the COVID-19 screening threshold on validation predictions, "
                       "record it in the sidecar and report it on test, external sets and CV folds")
    d.add_argument("--weights", default=str(WEIGHTS_DIR))
    d.add_argument("--sensitivity", type=float, default=0.90,
                   help="the validation COVID-19 sensitivity the threshold must keep (default 0.90)")
    d.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    d.set_defaults(func=_fit_decision)
