"""Writing and reading readers' verdicts: one verdict from the dashboard, many from a CSV file.

Verdicts join the audit log by the input's sha256: an imported verdict takes the model version, output,
probabilities and calibration of the newest prediction the audit log holds for that hash, and a hash the
log has never seen is reported and skipped (a verdict on a result nobody recorded cannot be scored).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from covidviz import CLASSES
from covidviz.audit.db import has_schema, migrate
from covidviz.audit.verdicts import NOT_ASSESSABLE, ORIGINS, VERDICTS, Verdict

VERDICT_COLUMNS = ("id", "created_at", "input_sha256", "reader", "verdict", "reader_class", "confidence",
                   "model_name", "model_sha256", "model_output", "probabilities", "calibration", "temperature",
                   "origin")
IMPORT_READER = "import"  # the reader of a CSV row that names none
_SHA = re.compile(r"^[0-9a-f]{64}$")
_ALIASES = {"covid-19": "covid", "covid19": "covid", "pneumonia (not covid)": "pneumonia",
            "not assessable": NOT_ASSESSABLE, "not-assessable": NOT_ASSESSABLE, "unassessable": NOT_ASSESSABLE}


def parse_verdict(text: str) -> str:
    """A verdict word as typed in a CSV (any case; "COVID-19" and "not assessable" accepted); ValueError
    for anything else."""
    word = str(text).strip().lower()
    word = _ALIASES.get(word, word)
    if word not in VERDICTS:
        raise ValueError(f"verdict {str(text)[:40]!r} is not one of {', '.join(VERDICTS)}")
    return word


def reader_class_of(verdict: str, model_output: str | None) -> str | None:
    """The class a verdict means: the model's output for "agree", none for "not assessable"."""
    if verdict == "agree":
        return model_output
    return None if verdict == NOT_ASSESSABLE else verdict


@dataclass(frozen=True)
class ShownResult:
    """The result a reader judged: model version, output, probabilities and calibration."""

    model_name: str | None
    model_sha256: str | None
    probabilities: dict[str, float]
    calibration: str | None = None
    temperature: float | None = None
    label: str | None = None  # the class shown, by the model's decision rule; None: read as the most probable

    @property
    def output(self) -> str:
        return self.label if self.label is not None else max(self.probabilities, key=self.probabilities.get)


def result_from_sidecar(probabilities: Mapping[str, float], sidecar: Mapping[str, Any]) -> ShownResult:
    """The shown result from a predictor's sidecar copy (as the dashboard holds it)."""
    from covidviz.audit.events import calibration_fields, model_identity
    from covidviz.model.decision import rule_from_sidecar
    name, sha = model_identity(sidecar)
    return ShownResult(model_name=name, model_sha256=sha, probabilities={c: float(p) for c, p in probabilities.items()},
                       **calibration_fields(sidecar), label=rule_from_sidecar(sidecar).label(probabilities))


def record_verdict(sha256: str, reader: str, verdict: str, shown: ShownResult, *, confidence: float | None = None,
                   origin: str = "dashboard", url: str | None = None, at: datetime | None = None) -> None:
    """Append one verdict (synchronously: the reader expects to see it counted). Raises on a bad value or
    a database error; the caller says so to the reader."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session
    verdict = parse_verdict(verdict)
    if not _SHA.match(sha256 or ""):
        raise ValueError("a verdict needs the input's sha256 (64 hex digits)")
    if origin not in ORIGINS:
        raise ValueError(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    if confidence is not None and not 0.0 <= float(confidence) <= 1.0:
        raise ValueError("confidence must lie between 0 and 1")
    row = {"created_at": at or datetime.now(UTC), "input_sha256": sha256, "reader": str(reader)[:128],
           "verdict": verdict, "reader_class": reader_class_of(verdict, shown.output),
           "confidence": None if confidence is None else float(confidence), "model_name": shown.model_name,
           "model_sha256": shown.model_sha256, "model_output": shown.output, "probabilities": shown.probabilities,
           "calibration": shown.calibration, "temperature": shown.temperature, "origin": origin}
    with Session(migrate(url)) as session, session.begin():
        session.execute(insert(Verdict), [row])


def load_verdicts(url: str | None = None) -> pd.DataFrame:
    """Every verdict row, oldest first (the history); an empty table where there is no schema yet."""
    from sqlalchemy import inspect, select
    from sqlalchemy.orm import Session

    from covidviz.audit.db import get_engine
    if not has_schema(url) or not inspect(get_engine(url)).has_table(Verdict.__tablename__):
        return _tidy(pd.DataFrame(columns=list(VERDICT_COLUMNS)))
    query = select(*(getattr(Verdict, c) for c in VERDICT_COLUMNS)).order_by(Verdict.created_at, Verdict.id)
    with Session(get_engine(url)) as session:
        rows = session.execute(query).all()
    return _tidy(pd.DataFrame(rows, columns=list(VERDICT_COLUMNS)))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["model_version"] = frame["model_sha256"].map(lambda s: s[:12] if isinstance(s, str) else None)
    for c in CLASSES:
        frame[f"p_{c}"] = frame["probabilities"].map(lambda p, c=c: p.get(c) if isinstance(p, dict) else None
                                                     ).astype("float64")
    return frame


def current_verdicts(history: pd.DataFrame) -> pd.DataFrame:
    """Each reader's newest verdict per input and model version: a changed mind replaces, never adds."""
    if history.empty:
        return history
    ordered = history.sort_values(["created_at", "id"])
    return ordered.drop_duplicates(["input_sha256", "reader", "model_sha256"], keep="last").reset_index(drop=True)


def latest_results(url: str | None, hashes: set[str]) -> dict[str, ShownResult]:
    """The newest recorded prediction for each hash the audit log knows (hashes it never saw are absent), with the
    class it showed: an imported "agree" means that class, which under a COVID-19 threshold need not be the most
    probable one."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from covidviz.audit.models import AuditRecord
    if not hashes or not has_schema(url):
        return {}
    out: dict[str, ShownResult] = {}
    engine = migrate(url)
    wanted = sorted(hashes)
    with Session(engine) as session:
        for start in range(0, len(wanted), 500):
            query = (select(AuditRecord.input_sha256, AuditRecord.model_name, AuditRecord.model_sha256,
                            AuditRecord.probabilities, AuditRecord.calibration, AuditRecord.temperature,
                            AuditRecord.predicted_class)
                     .where(AuditRecord.kind == "prediction",
                            AuditRecord.input_sha256.in_(wanted[start:start + 500]))
                     .order_by(AuditRecord.created_at, AuditRecord.id))
            for sha, name, model, probs, calibration, temperature, shown_class in session.execute(query):
                if isinstance(probs, dict) and probs:  # the class shown, by the rule then in force, not argmax
                    out[sha] = ShownResult(name, model, {c: float(p) for c, p in probs.items()}, calibration,
                                           temperature, label=shown_class)
    return out


@dataclass
class ImportReport:
    """What a verdicts import did, line by line where it matters."""

    added: int = 0
    unchanged: int = 0  # the reader's current verdict already said this: importing twice adds nothing
    superseded: int = 0  # rows overridden by a later row of the same file for the same film and reader
    unknown: list[tuple[int, str]] = field(default_factory=list)  # (line, sha256) the audit log never saw
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message)

    def lines(self) -> list[str]:
        out = [f"line {n}: {message}" for n, message in self.errors]
        out += [f"line {n}: sha256 {sha[:12]}… is not in the audit log (no recorded prediction): skipped"
                for n, sha in self.unknown]
        out.sort(key=lambda text: int(text.split(":")[0].split()[1]))
        out.append(f"{self.added} verdicts added, {self.unchanged} already recorded, {self.superseded} superseded "
                   f"by a later row, {len(self.unknown)} unknown hashes skipped, {len(self.errors)} bad rows")
        return out


def import_verdicts(path: str | Path, url: str | None = None, default_reader: str = IMPORT_READER) -> ImportReport:
    """Import ``sha256,verdict[,reader]`` rows (a header row naming the columns is recognised). A bad row
    is reported with its line number and the import goes on. The file states each reader's verdict: of
    several rows for one film and reader the last counts, and a row repeating the reader's current verdict
    adds nothing, so importing the same file twice adds nothing."""
    report = ImportReport()
    rows: list[tuple[int, str, str, str]] = []
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        for line, cells in enumerate(csv.reader(handle), start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if line == 1 and cells[0].lower() == "sha256":
                continue
            if len(cells) < 2 or len(cells) > 3:
                report.errors.append((line, f"expected sha256,verdict[,reader]; got {len(cells)} columns"))
                continue
            sha = cells[0].lower()
            if not _SHA.match(sha):
                report.errors.append((line, "the first column is not a sha256 (64 hex digits)"))
                continue
            try:
                verdict = parse_verdict(cells[1])
            except ValueError as exc:
                report.errors.append((line, str(exc)))
                continue
            reader = (cells[2] if len(cells) == 3 and cells[2] else default_reader)[:128]
            rows.append((line, sha, verdict, reader))
    last = {(sha, reader): line for line, sha, _, reader in rows}
    report.superseded = len(rows) - len(last)
    rows = [row for row in rows if last[(row[1], row[3])] == row[0]]
    known = latest_results(url, {sha for _, sha, _, _ in rows})
    current = current_verdicts(load_verdicts(url))
    said = {(r.input_sha256, r.reader, r.model_sha256): r.verdict for r in current.itertuples()}
    for line, sha, verdict, reader in rows:
        shown = known.get(sha)
        if shown is None:
            report.unknown.append((line, sha))
            continue
        key = (sha, reader, shown.model_sha256)
        if said.get(key) == verdict:
            report.unchanged += 1
            continue
        record_verdict(sha, reader, verdict, shown, origin="import", url=url)
        said[key] = verdict
        report.added += 1
    return report
