"""``python -m covidviz pacs [--url URL] search|score|demo``: a PACS over DICOMweb from a terminal.

The server comes from ``--url`` or ``COVIDVIZ_DICOMWEB_URL``; credentials only from the environment
(``COVIDVIZ_DICOMWEB_USER``/``_PASSWORD`` or ``_TOKEN``), never from flags, which shells and ``ps`` keep.
Output names studies by date, accession number and Study Instance UID: no patient attribute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from covidviz import CLASSES
from covidviz.paths import WEIGHTS_DIR

DEMO_PORT = 8042  # Orthanc's usual port, so the README's URLs work; a free one is taken when it is busy
LIMIT = 50  # studies listed or scored by one command unless --limit says otherwise


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pacs = sub.add_parser("pacs", help="search a PACS over DICOMweb, score its chest radiographs, store results back",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pacs.add_argument("--url", help="DICOMweb root, e.g. http://localhost:8042/dicom-web (default: "
                                    "$COVIDVIZ_DICOMWEB_URL)")
    actions = pacs.add_subparsers(dest="pacs_command", required=True)

    search = actions.add_parser("search", help="list studies (QIDO-RS)")
    _filters(search)
    search.add_argument("--json", action="store_true", help="one JSON object per study")
    search.set_defaults(func=_search)

    score = actions.add_parser("score", help="score the frontal chest radiographs of studies (WADO-RS)")
    _filters(score)
    score.add_argument("--study", action="append", metavar="UID", help="a Study Instance UID (repeatable); "
                       "instead of the filters")
    score.add_argument("--store", action="store_true",
                       help="store each image's Secondary Capture and Structured Report back in its study (STOW-RS)")
    score.add_argument("--json", action="store_true", help="one JSON object per image")
    score.add_argument("--weights", default=str(WEIGHTS_DIR))
    score.set_defaults(func=_score)

    demo = actions.add_parser("demo", help="start a throwaway local Orthanc loaded with the example X-rays")
    demo.add_argument("--port", type=int, default=DEMO_PORT, help=f"HTTP port (default {DEMO_PORT}, or a free one)")
    demo.add_argument("--once", action="store_true",
                      help="search, score and store once, print it all, then stop (no waiting for Ctrl-C)")
    demo.add_argument("--weights", default=str(WEIGHTS_DIR))
    demo.set_defaults(func=_demo)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", help="study date: 2024-03-01, or a range 2024-03-01..2024-03-31 (open ends allowed)")
    parser.add_argument("--modality", help="a modality in the study: CR, DX, ...")
    parser.add_argument("--accession", help="accession number")
    parser.add_argument("--limit", type=int, default=LIMIT, help="at most this many studies (default %(default)s)")


def _connection(args: argparse.Namespace):
    from covidviz.interop.pacs_session import PacsSettings, connect
    settings = PacsSettings.from_env(url=args.url)
    return settings, connect(settings)


def _search(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up at call time: a default would keep the stdout of import time
    from covidviz.interop.pacs import search_studies, study_filters
    from covidviz.interop.pacs_session import PacsError
    try:
        settings, client = _connection(args)
        studies = search_studies(client, settings, study_filters(args.date, args.modality, args.accession),
                                 limit=args.limit)
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for s in studies:
            print(json.dumps({"study_uid": s.study_uid, "date": s.shown_date, "time": s.time,
                              "accession": s.accession, "modalities": list(s.modalities),
                              "description": s.description, "series": s.n_series, "images": s.n_images}), file=out)
        return 0
    if not studies:
        print(f"no studies match at {settings.where}", file=out)
        return 0
    print(f"{'date':10}  {'accession':16}  {'modalities':10}  {'images':>6}  {'description':24}  study UID", file=out)
    for s in studies:
        print(f"{s.shown_date:10}  {s.accession[:16]:16}  {','.join(s.modalities)[:10]:10}  "
              f"{'' if s.n_images is None else s.n_images:>6}  {s.description[:24]:24}  {s.study_uid}", file=out)
    return 0


def _score(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from covidviz.errors import WeightsError
    from covidviz.interop.pacs import find_study, search_studies, study_filters
    from covidviz.interop.pacs_session import PacsError
    from covidviz.interop.worklist import score_study
    from covidviz.model.predictor import Predictor
    try:
        settings, client = _connection(args)
        if args.study:
            studies = [find_study(client, settings, uid.strip()) for uid in args.study]
        else:
            studies = search_studies(client, settings, study_filters(args.date, args.modality, args.accession),
                                     limit=args.limit)
        if not studies:
            print(f"no studies match at {settings.where}", file=out)
            return 1
        predictor = Predictor(args.weights)
        failed = 0
        for study in studies:
            scored = score_study(client, settings, predictor, study, store_results=args.store)
            for row in scored.rows():
                failed += bool(row["image"] and row["note"])  # an image unread or its results not stored
                print(_score_line(row, args.json), file=out, flush=True)
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WeightsError as exc:
        print(f"error: the model could not be loaded: {exc}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _score_line(row: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(row)
    where = f"{row['date']}  {row['accession'] or '-'}"
    if row["label"] is None:
        return f"{where}\t{row['image'] or '-'}\tNOT SCORED\t{row['note']}"
    probs = " ".join(f"{c}={row[f'p_{c}']:.3f}" for c in CLASSES)
    extra = "".join(f"\t{text}" for text in (f"WARNING: {row['flags']}" if row["flags"] else "",
                                             f"stored {row['stored']} result objects" if row["stored"] else "",
                                             row["note"]) if text)
    return f"{where}\t{row['image']}\t{row['label']}\t{probs}{extra}"


def _demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from covidviz.interop.orthanc import LocalOrthanc, OrthancUnavailable, free_port
    from covidviz.interop.pacs import store
    from covidviz.interop.pacs_session import PacsError, PacsSettings, connect
    from covidviz.interop.sample_dicom import example_studies
    port = args.port if _port_is_free(args.port) else free_port()
    try:
        with LocalOrthanc(http_port=port) as orthanc:
            settings = PacsSettings(url=orthanc.dicomweb_url)
            client = connect(settings)
            datasets = list(example_studies()) + _pydicom_fixtures()
            for dataset in datasets:
                store(client, settings, [dataset])
            print(f"Orthanc with DICOMweb is running at {orthanc.dicomweb_url} holding {len(datasets)} images "
                  f"(browse them at {orthanc.url}/app/explorer.html).", file=out, flush=True)
            args.url = orthanc.dicomweb_url
            if args.once:
                print("--- search", file=out)
                _search(argparse.Namespace(url=args.url, date=None, modality=None, accession=None, limit=LIMIT,
                                           json=False), out)
                print("--- score --store", file=out)
                return _score(argparse.Namespace(url=args.url, date=None, modality=None, accession=None, limit=LIMIT,
                                                 study=None, store=True, json=False, weights=args.weights), out)
            print(f"""
In another terminal:
  export COVIDVIZ_DICOMWEB_URL={orthanc.dicomweb_url}
  python -m covidviz pacs search
  python -m covidviz pacs score --modality CR --store
  python -m streamlit run app.py      # then open "PACS worklist"
Ctrl-C stops this Orthanc and deletes everything it stored.""", file=out, flush=True)
            try:
                while orthanc.process is not None and orthanc.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print("stopping", file=out)
            return 0
    except (OrthancUnavailable, PacsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _port_is_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pydicom_fixtures() -> list:
    """pydicom-data's real CR radiographs (a chest PA and an extremity) and a CT slice, when it is installed:
    the chest is scored, the other two show how studies that are not chest radiographs are reported."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError:
        return []
    found = []
    for name in ("RG1_UNCI.dcm", "RG3_UNCI.dcm", "CT_small.dcm"):
        path = get_testdata_file(name)
        if path:
            found.append(pydicom.dcmread(path))
    return found
