"""``python -m covidviz predict``: score files and folders, batched, one line per image."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from covidviz.audit.recorder import record_outcome
from covidviz.errors import XrayInputError
from covidviz.io.isolation import read_untrusted_file
from covidviz.model.precision import native_bf16
from covidviz.model.predictor import Prediction, Predictor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic"}


def expand_paths(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image suffixes, in sorted order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def predict_paths(predictor: Predictor, paths: list[Path], batch_size: int = 32) -> Iterator[Prediction]:
    """Predictions in input order; unreadable inputs become error predictions, never exceptions. Each file is
    decoded in an isolated worker: one that hangs or exhausts memory is refused and the run goes on."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        loaded, errors = [], {}
        for path in chunk:
            try:
                loaded.append((str(path), read_untrusted_file(path)))
            except XrayInputError as exc:
                errors[str(path)] = str(exc)
        scored = {p.name: p for p in predictor.predict_xrays([x for _, x in loaded], [n for n, _ in loaded])}
        for path in chunk:
            name = str(path)
            yield scored[name] if name in scored else Prediction(name=name, error=errors[name])


def format_line(prediction: Prediction, as_json: bool) -> str:
    if as_json:
        return json.dumps(prediction.as_json())
    if prediction.error:
        return f"{prediction.name}\tERROR\t{prediction.error}"
    probs = " ".join(f"{c}={p:.3f}" for c, p in prediction.probabilities.items())
    warn = f"\tWARNING: {' | '.join(prediction.warnings)}" if prediction.warnings else ""
    if prediction.abstained:  # no class where there is none to give; the probabilities stay for the record
        return f"{prediction.name}\tNO CLASS\t{probs}\tABSTAINED: {prediction.abstained}{warn}"
    return f"{prediction.name}\t{prediction.label}\t{probs}{warn}"


def run_predict(paths: list[str], weights_dir: str, as_json: bool, fast: bool, out: TextIO,
                engine: str | None = None, dicom_out: str | None = None) -> int:
    """Print one line per image; exit status 1 when any input failed. ``dicom_out``: a folder for each DICOM
    input's Secondary Capture and Structured Report (notes about them go to stderr, not into the lines)."""
    files = list(expand_paths(paths))
    if not files:
        print("no images found (accepted: .png, .jpg, .jpeg, .dcm files, or folders holding them)", file=out)
        return 1
    if fast and not native_bf16():
        print("note: --fast ignored: this CPU has no native bf16 (emulated bf16 runs several times slower than "
              "fp32)", file=sys.stderr)
        fast = False
    predictor = Predictor(weights_dir, fast=fast, engine=engine)
    print(f"note: {predictor.calibration.note}", file=sys.stderr)
    failed = 0
    for prediction in predict_paths(predictor, files):
        failed += prediction.error is not None
        print(format_line(prediction, as_json), file=out, flush=True)
        record_outcome("cli", Path(prediction.name), prediction, predictor)  # queued; never raises
        if dicom_out and prediction.error is None:
            write_dicom_results(predictor, Path(prediction.name), Path(dicom_out))
    return 1 if failed else 0


def write_dicom_results(predictor: Predictor, source: Path, directory: Path) -> None:
    """The SC and SR of one input into ``directory``, or a note saying why there are none (a PNG has no
    patient or study for them to carry)."""
    from covidviz.interop.dicom_results import DicomResultError, write_results
    try:
        written = write_results(predictor, source, directory)
    except (DicomResultError, XrayInputError) as exc:
        print(f"note: {source}: no DICOM results: {exc}", file=sys.stderr)
        return
    print(f"note: {source}: wrote {' and '.join(str(p) for p in written)}", file=sys.stderr)
