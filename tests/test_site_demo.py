"""The site loop on real films and the real model: recalibration for a "site" made of the external
collections (Hannover COVID-19, Shenzhen normals), and the drift alarm when Shenzhen films follow internal
test films. The figures these tests print are the README's (section "Know how well it does here").

Nothing here chooses anything about the shipped model: the external films only play a hospital."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from covidviz import CLASSES
from covidviz.audit.db import dispose
from covidviz.audit.events import event_from_result
from covidviz.audit.query import load_records
from covidviz.audit.recorder import write_events
from covidviz.audit.site_report import drift_report, load_drift_reference
from covidviz.audit.verdict_store import import_verdicts
from covidviz.data.collection import read_metadata
from covidviz.data.split import read_split
from covidviz.evaluation.measures.metrics import brier_score, expected_calibration_error, negative_log_likelihood
from covidviz.evaluation.measures.site_calibration import logits_from_probabilities, nll_difference, stratified_halves
from covidviz.evaluation.measures.site_drift import drift_figures
from covidviz.model.inference import softmax
from covidviz.model.site_profile import calibration_for, read_profile
from covidviz.verified import read_sidecar
from tests.conftest import ROOT, SHARED, WEIGHTS, requires_data

pytestmark = [pytest.mark.slow, requires_data]
INTERNAL_FILMS = 400  # a seeded subset of the internal test split (the whole one takes minutes here)
SEED = 0


@pytest.fixture(scope="module")
def scored():
    """Real model outputs (``predict``'s own path) for the external films and a seeded subset of the
    internal test films: file -> (true class, sha256, ``predict --json`` result)."""
    from covidviz.model.predictor import Predictor
    from covidviz.tools.predict import predict_paths
    records = {r.file: r for r in read_metadata(SHARED)}
    external = sorted(f for f, r in records.items() if r.set == "external")
    test = read_split(WEIGHTS / "split.csv")["test"]
    # in a random order: films arrive mixed, not class folder by class folder (that alone would be drift)
    internal = np.random.default_rng(SEED).choice(test, INTERNAL_FILMS, replace=False).tolist()
    predictor = Predictor(WEIGHTS)
    out = {}
    for prediction in predict_paths(predictor, [SHARED / f for f in external + internal]):
        assert prediction.error is None, prediction.error
        file = str(Path(prediction.name).relative_to(SHARED))
        out[file] = (records[file].label, hashlib.sha256(Path(prediction.name).read_bytes()).hexdigest(),
                     prediction.as_json())
    return {"results": out, "external": external, "internal": internal, "sidecar": predictor.sidecar}


def _audit(url: str, scored, files: list[str], start: datetime) -> None:
    """The audit records ``predict`` writes for these films, one minute apart in this order."""
    events = []
    for i, f in enumerate(files):
        _, sha, result = scored["results"][f]
        event = event_from_result("cli", sha, result, scored["sidecar"], True)
        events.append(event.__class__(**{**event.__dict__, "created_at": start + timedelta(minutes=i)}))
    write_events(events, url)


def _verdicts(path: Path, scored, files: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "verdict", "reader"])
        writer.writerows((scored["results"][f][1], scored["results"][f][0], "site-demo") for f in files)
    return path


def _measure(scored, files: list[str], temperature: float, shipped: float) -> dict:
    y = np.array([CLASSES.index(scored["results"][f][0]) for f in files])
    p = np.array([[scored["results"][f][2]["probabilities"][c] for c in CLASSES] for f in files])
    logits = logits_from_probabilities(p, np.full(len(files), shipped))
    before, after = softmax(logits, shipped), softmax(logits, temperature)
    return {"n": len(files), "nll": [negative_log_likelihood(y, before), negative_log_likelihood(y, after)],
            "ece": [expected_calibration_error(y, before), expected_calibration_error(y, after)],
            "brier": [brier_score(y, before), brier_score(y, after)],
            **nll_difference(y, before, after, 2000, SEED)}


def _calibrate(tmp_path, monkeypatch, scored, name: str, files: list[str]) -> tuple[dict, dict | None, Path]:
    """``site calibrate`` on verdicts (true labels) for half of ``files``; returns what it said and wrote."""
    from covidviz.tools.cli import main
    url = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    profile_path = tmp_path / f"{name}_profile.json"
    monkeypatch.setenv("COVIDVIZ_SITE_PROFILE", str(profile_path))
    _audit(url, scored, files, datetime(2026, 11, 1, tzinfo=UTC))
    y = np.array([CLASSES.index(scored["results"][f][0]) for f in files])
    verdict_half, measure_half = stratified_halves(y, SEED)
    report = import_verdicts(_verdicts(tmp_path / f"{name}.csv", scored, [files[i] for i in verdict_half]), url)
    assert report.added == len(verdict_half) and not report.errors and not report.unknown
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["site", "calibrate", "--db", url])
    said = json.loads(out.getvalue().splitlines()[-1])
    dispose(url)
    profile = read_profile(profile_path)
    assert (status == 0) == said["accepted"] == (profile is not None)  # a profile only when the guard says so
    shipped = float(read_sidecar(WEIGHTS)["temperature"])
    measured = _measure(scored, [files[i] for i in measure_half], said["temperature"] or shipped, shipped)
    print(f"\n{name}: {said['reason']}; verdicts {said['counts']}; temperature {shipped:.3f} -> "
          f"{said['temperature']}; on the other half {json.dumps(measured)}")
    return said, profile, profile_path


def test_calibration_for_a_site_of_both_external_collections(tmp_path, monkeypatch, scored):
    said, profile, path = _calibrate(tmp_path, monkeypatch, scored, "external", scored["external"])
    if profile is not None:
        assert profile["verdicts"]["n"] == sum(said["counts"].values())
        assert profile["model_sha256"] == scored["sidecar"]["weights_sha256"]
        calibration = calibration_for(read_sidecar(WEIGHTS), path)
        assert calibration.temperature == pytest.approx(said["temperature"])
        assert f"calibrated for this site on {profile['verdicts']['n']} verdicts" in calibration.note
        assert not path.resolve().is_relative_to(ROOT / "weights")


def test_calibration_refuses_a_single_class_site(tmp_path, monkeypatch, scored):
    hannover = [f for f in scored["external"] if f.startswith("external/covid/")]
    said, profile, _ = _calibrate(tmp_path, monkeypatch, scored, "hannover", hannover)
    assert not said["accepted"] and profile is None and "at least 2 classes" in said["reason"]


def test_calibration_on_films_like_the_validation_ones(tmp_path, monkeypatch, scored):
    """Internal test films come from the distribution the shipped temperature was fitted on: whatever the
    guard decides is reported; the test holds that the decision and the files agree."""
    _calibrate(tmp_path, monkeypatch, scored, "internal", scored["internal"])


def _stream(scored, files: list[str]) -> dict[str, np.ndarray]:
    results = [scored["results"][f][2] for f in files]
    return {**{f"p_{c}": np.array([r["probabilities"][c] for r in results]) for c in CLASSES},
            "ood_distance": np.array([r.get("ood_distance", np.nan) for r in results], float),
            "no_plausible_lungs": np.array([np.nan if r.get("lungs_plausible") is None
                                            else float(not r["lungs_plausible"]) for r in results])}


def test_drift_alarm_rises_when_shenzhen_films_follow_internal_test_films(tmp_path, scored, monkeypatch):
    from covidviz.tools.cli import main
    reference = load_drift_reference(WEIGHTS)
    assert reference is not None and reference["weights_sha256"] == scored["sidecar"]["weights_sha256"]
    shenzhen = [f for f in scored["external"] if f.startswith("external/normal/")]
    url = f"sqlite:///{tmp_path / 'drift.sqlite'}"
    _audit(url, scored, scored["internal"] + shenzhen, datetime(2026, 11, 1, tzinfo=UTC))
    drift = drift_report(load_records(url), reference)
    version = scored["sidecar"]["weights_sha256"][:12]
    figures = drift["by_model"][version]
    points = figures["over_time"]
    internal_only = [p for p in points if p["end"] <= len(scored["internal"])]
    print("\ndrift over time (window end, alarm, PSI):",
          [(p["end"], p["alarm"], {m: round(v, 3) for m, v in p.items() if m.startswith(("p_", "ood", "no_"))})
           for p in points])
    assert internal_only and not any(p["alarm"] for p in internal_only)
    assert figures["alarm"] and points[-1]["alarm"]
    capsys_out = tmp_path / "report.json"
    import contextlib
    with capsys_out.open("w") as handle, contextlib.redirect_stdout(handle):
        assert main(["site", "report", "--json", "--db", url, "--bootstrap", "10"]) == 0
    assert json.loads(capsys_out.read_text().splitlines()[-1])["drift"]["alarm"] is True

    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("COVIDVIZ_DB_URL", url)
    for page in ("app_pages/site_performance.py", "app_pages/audit.py"):
        at = AppTest.from_file(str(ROOT / page), default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Drift alarm" in e.value for e in at.error), page
    dispose(url)


def test_a_same_distribution_stream_raises_no_alarm_in_19_of_20_runs(scored):
    reference = load_drift_reference(WEIGHTS)
    stream = _stream(scored, scored["internal"])
    alarms = 0
    for seed in range(20):
        rows = np.random.default_rng(seed).choice(len(scored["internal"]), 200, replace=False)
        alarms += drift_figures(reference["measures"], {m: v[rows] for m, v in stream.items()})["alarm"]
    print(f"\nsame-distribution windows of 200 internal test films: {alarms} alarms in 20 runs")
    assert alarms <= 1
