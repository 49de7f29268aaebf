"""``python -m covidviz audit|batch|bench-batch``: the audit log from a terminal, and archive scoring on Ray."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from covidviz.audit.vocabulary import INTERFACES, KINDS
from covidviz.paths import WEIGHTS_DIR


def moment(text: str) -> datetime:
    """ISO date or date-time; naive means UTC."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or date-time "
                                         "(YYYY-MM-DDTHH:MM[:SS][+HH:MM]); naive times are UTC") from None


def _filter(args: argparse.Namespace):
    from covidviz.audit.query import AuditFilter
    return AuditFilter(since=args.since, until=args.until, interfaces=tuple(args.interface or ()),
                       model_versions=tuple(args.model or ()), classes=tuple(args.label or ()),
                       kinds=tuple(args.kind or ()), users=tuple(args.user or ()))


def _audit(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from covidviz.audit.db import database_url, safe_url
    from covidviz.audit.query import display_table, export_records, load_records, score_summary, summary_text
    url = database_url(args.db)
    try:
        frame = load_records(url, _filter(args), limit=args.limit if args.action == "list" else None)
    except SQLAlchemyError as exc:
        print(f"cannot read the audit log at {safe_url(url)}: {exc.__class__.__name__}: "
              f"{str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.action == "list":
        import pandas as pd
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                               "display.max_colwidth", 40):
            table = display_table(frame).drop(columns=["input_sha256", "model_name", "app_version", "user_issuer"])
            for column in ("warnings", "error"):
                table[column] = table[column].map(lambda t: t if not isinstance(t, str) or len(t) <= 60
                                                  else t[:57] + "...")
            print(table.to_string(index=False) if len(table) else "no audit records match")
    elif args.action == "summary":
        print(summary_text(frame))
        summary = score_summary(frame, args.freq)
        if len(summary):
            print()
            print(summary.round({c: 4 for c in summary.columns if c.startswith("p_")}).to_string(index=False))
    else:
        if not args.out:
            print("audit export needs --out FILE.csv or FILE.parquet", file=sys.stderr)
            return 2
        try:
            path = export_records(frame, args.out)
        except (ValueError, OSError) as exc:
            print(f"cannot export: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(frame)} records to {path}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from covidviz.tools.batch import run_batch_cli
    return run_batch_cli(args)


def _bench_batch(args: argparse.Namespace) -> int:
    from covidviz.tools.bench_batch import run_bench_batch
    return run_bench_batch(args.weights, args.data, args.images, args.max_workers, sys.stdout)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("audit", help="list, summarise or export the audit log (COVIDVIZ_DB_URL or "
                                     "~/.covidviz/audit.sqlite)")
    a.add_argument("action", choices=("list", "summary", "export"), nargs="?", default="list")
    a.add_argument("--db", help="SQLAlchemy URL (default: COVIDVIZ_DB_URL, else ~/.covidviz/audit.sqlite)")
    a.add_argument("--since", type=moment, help="from this date/time (UTC unless an offset is given)")
    a.add_argument("--until", type=moment, help="up to this date/time")
    a.add_argument("--interface", action="append", choices=INTERFACES, help="repeatable")
    a.add_argument("--model", action="append", help="model version: weights sha256 or its first digits (repeatable)")
    a.add_argument("--class", dest="label", action="append", help="predicted class (repeatable)")
    a.add_argument("--kind", action="append", choices=KINDS, help="repeatable")
    a.add_argument("--user", action="append",
                   help="who: a signed-in user's subject (sub), an operating-system user, or user@host (repeatable)")
    a.add_argument("--limit", type=int, default=50, help="list: newest N records (0: all)")
    a.add_argument("--freq", default="D", help="summary: period for the score distributions (D, W, M, h)")
    a.add_argument("--out", help="export: FILE.csv (formula-safe) or FILE.parquet")
    a.set_defaults(func=_audit)

    b = sub.add_parser("batch", help="score a folder tree or a file list on Ray into a Parquet dataset (resumable)")
    b.add_argument("source", help="folder (walked recursively), text file listing one image path per line, "
                                  "or pacs:QUERY, the frontal chest radiographs of the DICOMweb server in "
                                  "$COVIDVIZ_DICOMWEB_URL matching QUERY, e.g. pacs:modality=CR&date=20240101-20240131 "
                                  "(keys: modality, date, accession, study, limit; quote it in a shell)")
    b.add_argument("--out", required=True, help="Parquet dataset folder, e.g. results.parquet (appended to on resume)")
    b.add_argument("--address", help="existing Ray cluster: head:6379 or auto on a cluster node, ray://head:10001 through Ray "
                                        "Client; token from $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token "
                                        "(default: $RAY_ADDRESS, as under ray job submit, else a local Ray for the job)")
    b.add_argument("--workers", type=int, default=1, help="model actors (each loads the model once)")
    b.add_argument("--batch-size", type=int, default=16, help="images per model call")
    b.add_argument("--weights", default=str(WEIGHTS_DIR))
    b.add_argument("--ship-code", action="store_true",
                   help="with --address: send this checkout (code and weights) to the cluster as the job's "
                        "working_dir instead of relying on it being installed on every node")
    b.add_argument("--no-audit", action="store_true", help="do not record the results in the audit log")
    b.set_defaults(func=_batch)

    c = sub.add_parser("bench-batch", help="images/s of predict and of batch (1..N workers) on the same files")
    c.add_argument("--weights", default=str(WEIGHTS_DIR))
    c.add_argument("--data", help="folder of X-rays to time (default: examples/xrays, repeated)")
    c.add_argument("--images", type=int, default=64, help="images per timed run (batch also runs half as many)")
    c.add_argument("--max-workers", type=int, default=2)
    c.set_defaults(func=_bench_batch)
