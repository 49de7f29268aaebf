"""``python -m covidviz site …``: readers' verdicts, the site's figures, its calibration profile and drift."""

from __future__ import annotations

import argparse
import json
import sys

from covidviz.paths import DEFAULT_DATA_DIR, WEIGHTS_DIR
from covidviz.tools.cli_audit import moment


def _import(args: argparse.Namespace) -> int:
    from covidviz.audit.verdict_store import import_verdicts
    try:
        report = import_verdicts(args.file, args.db, default_reader=args.reader)
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _print_figures(title: str, figures: dict) -> None:
    print(f"{title}: {figures['n_verdicts']} verdicts ({figures['n_not_assessable']} not assessable); "
          f"agreement {_fmt(figures['agreement'])}, Cohen's kappa {_fmt(figures['kappa'])}, ECE {_fmt(figures['ece'])}")
    for c, rates in figures["per_class"].items():
        if not rates["meaningful"]:
            print(f"  {c}: {rates['n']} verdicts: not yet meaningful (fewer than {figures['min_meaningful']})")
            continue
        print(f"  {c} (n={rates['n']}): " + ", ".join(
            f"{name} {_fmt(rates[name]['value'])} [{_fmt(rates[name]['ci95'][0])}, {_fmt(rates[name]['ci95'][1])}]"
            for name in ("sensitivity", "specificity", "precision", "npv")))


def _report(args: argparse.Namespace) -> int:
    from covidviz.audit.site_report import VerdictFilter, site_report
    flt = VerdictFilter(since=args.since, until=args.until, readers=tuple(args.reader or ()))
    report = site_report(args.db, args.weights, flt, n_boot=args.bootstrap, window=args.window)
    if not args.json:
        _print_figures("all model versions", report)
        for version, figures in report["by_model"].items():
            _print_figures(f"model {version}", figures)
        drift = report["drift"]
        if drift["reference"] is None:
            print(drift["note"])
        for version, figures in drift["by_model"].items():
            if "measures" not in figures:
                print(f"drift, model {version}: {figures['note']}")
                continue
            print(f"drift, model {version} (last {drift['window']} of {figures['n']} predictions): " + ", ".join(
                f"{m} PSI {_fmt(f['psi'])} {f['level']}" for m, f in figures["measures"].items())
                + ("  ALARM" if figures["alarm"] else ""))
    print(json.dumps(report, default=str))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from covidviz.tools.site_tools import calibrate_site
    if args.revert:
        return _revert()
    outcome, profile = calibrate_site(args.db, args.weights, min_per_class=args.min_per_class, seed=args.seed,
                                      write=not args.dry_run)
    print("verdicts per class: " + ", ".join(f"{c} {n}" for c, n in outcome.counts.items()))
    print(outcome.reason)
    if profile is not None:
        print(f"wrote site profile v{profile['version']} (sha256 {profile['sha256'][:12]}): temperature "
              f"{outcome.current_temperature:.4f} -> {outcome.temperature:.4f}")
    print(json.dumps({**outcome.as_json(), "profile_version": None if profile is None else profile["version"]}))
    return 0 if outcome.accepted else 3


def _revert() -> int:
    from covidviz.model.site_profile import revert_profile
    from covidviz.paths import site_profile_path
    profile = revert_profile()
    print(f"site profile {site_profile_path()}: " + ("removed; the shipped calibration applies" if profile is None
                                                     else f"v{profile['version']} is active again"))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from covidviz.errors import WeightsError
    from covidviz.model.site_profile import read_profile
    from covidviz.paths import site_profile_path
    if args.action == "revert":
        return _revert()
    try:
        profile = read_profile()
    except WeightsError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{site_profile_path()}: " + ("none; the shipped calibration applies" if profile is None else
                                        json.dumps(profile, indent=2)))
    return 0


def _drift_reference(args: argparse.Namespace) -> int:
    from covidviz.tools.site_tools import write_drift_reference
    print(f"wrote {write_drift_reference(args.data, args.weights)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    site = sub.add_parser("site", help="readers' verdicts, this site's figures, its calibration profile, drift")
    actions = site.add_subparsers(dest="site_command", required=True)
    db_help = "SQLAlchemy URL (default: COVIDVIZ_DB_URL, else ~/.covidviz/audit.sqlite)"

    v = actions.add_parser("verdicts", help="import readers' verdicts")
    v_actions = v.add_subparsers(dest="verdicts_command", required=True)
    i = v_actions.add_parser("import", help="import a CSV of sha256,verdict[,reader] rows")
    i.add_argument("file")
    i.add_argument("--db", help=db_help)
    i.add_argument("--reader", default="import", help="the reader of rows that name none")
    i.set_defaults(func=_import)

    r = actions.add_parser("report", help="the site's figures per model version, and drift; JSON on the last line")
    r.add_argument("--json", action="store_true", help="print only the JSON object")
    r.add_argument("--db", help=db_help)
    r.add_argument("--weights", default=str(WEIGHTS_DIR))
    r.add_argument("--since", type=moment)
    r.add_argument("--until", type=moment)
    r.add_argument("--reader", action="append", help="only this reader's verdicts (repeatable)")
    r.add_argument("--bootstrap", type=int, default=1000)
    r.add_argument("--window", type=int, default=200, help="recent predictions compared with the drift reference")
    r.set_defaults(func=_report)

    c = actions.add_parser("calibrate", help="fit the site's temperature on its verdicts; writes a profile only "
                                             "when held-out verdicts show an improvement")
    c.add_argument("--db", help=db_help)
    c.add_argument("--weights", default=str(WEIGHTS_DIR))
    c.add_argument("--min-per-class", type=int, default=30)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--dry-run", action="store_true", help="say what would happen; write nothing")
    c.add_argument("--revert", action="store_true", help="go back to the previous profile (or the shipped one)")
    c.set_defaults(func=_calibrate)

    p = actions.add_parser("profile", help="show or revert the site's calibration profile")
    p.add_argument("action", choices=("show", "revert"), nargs="?", default="show")
    p.set_defaults(func=_profile)

    d = actions.add_parser("drift-reference", help="write weights/eval/drift_reference.json from the validation "
                                                   "images (needs the data)")
    d.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    d.add_argument("--weights", default=str(WEIGHTS_DIR))
    d.set_defaults(func=_drift_reference)
