"""Archive scoring's output: result rows in Parquet part files, each written whole, so a killed job loses at
most the part being filled and a resumed one skips every input already written."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from covidviz import CLASSES
from covidviz.tools.batch_sources import BatchSourceError

PART_ROWS = 256  # rows per Parquet part file: what a killed job can lose
PART_SECONDS = 30.0
RESULT_SCHEMA = pa.schema([
    ("file", pa.string()),
    ("label", pa.string()),  # by the model's decision rule; null where it gave none (see abstained)
    ("abstained", pa.string()),  # why no class was given (out of distribution, no plausible lungs)
    ("probabilities", pa.struct([(c, pa.float64()) for c in CLASSES])),
    ("warnings", pa.list_(pa.string())),
    ("error", pa.string()),
    ("sha256", pa.string()),
    ("model_sha256", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
])


def result_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Result rows (see :func:`result_row`) as a table of the one result schema."""
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def result_row(prediction_json: dict[str, Any], sha256: str | None, model_sha256: str | None) -> dict[str, Any]:
    """A ``predict --json`` object as a Parquet row, plus the input's and the model's hashes."""
    return {"file": prediction_json["file"], "label": prediction_json.get("label"),
            "abstained": prediction_json.get("abstained"),
            "probabilities": prediction_json.get("probabilities"), "warnings": prediction_json.get("warnings", []),
            "error": prediction_json.get("error"), "sha256": sha256, "model_sha256": model_sha256,
            "scored_at": datetime.now(UTC)}


def scored_keys(out: Path) -> set[str]:
    """Inputs already in the output dataset (scored or rejected): a resumed job skips them."""
    if not out.exists():
        return set()
    if not out.is_dir():
        raise BatchSourceError(f"--out {out} is a file: name a folder for the Parquet dataset (e.g. results.parquet)")
    parts = sorted(out.glob("*.parquet"))
    return {k for part in parts for k in pq.read_table(part, columns=["file"]).column("file").to_pylist()}


class PartWriter:
    """Rows into ``out/part-<run>-<n>.parquet``: each part is written whole under a hidden name and renamed, so
    the dataset never holds a half-written file."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.run = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.pending: list[pa.Table] = []
        self.rows = self.parts = 0
        self.last = time.monotonic()

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if sum(t.num_rows for t in self.pending) >= PART_ROWS or time.monotonic() - self.last > PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        final = self.out / f"part-{self.run}-{self.parts:05d}.parquet"
        hidden = self.out / f".{final.name}.tmp"
        pq.write_table(pa.concat_tables(self.pending), hidden)
        os.replace(hidden, final)
        self.pending, self.parts, self.last = [], self.parts + 1, time.monotonic()
