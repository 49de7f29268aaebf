"""The audit log on a real SQLite file and a real PostgreSQL server: schema by migration, nothing lost under
concurrent writers, nothing identifying stored, failures that never reach the caller, and the exports,
CLI and page that read it back."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, inspect, text

from covidviz import CLASSES
from covidviz.audit.db import alembic_config, current_revision, dispose, has_schema, head_revision, migrate
from covidviz.audit.events import AuditEvent, flags_from_warnings
from covidviz.audit.models import AuditRecord, Base
from covidviz.audit.query import (
    AuditFilter,
    counts_over_time,
    filter_records,
    load_records,
    score_summary,
    to_csv_bytes,
    to_parquet_bytes,
)
from covidviz.audit.recorder import (
    AuditRecorder,
    get_recorder,
    record_heatmap,
    record_outcome,
    record_prediction,
    record_rejection,
    write_events,
)
from covidviz.audit.sign_ins import SignInKey, StoredSignIn, end_sign_in, load_sign_in, note_activity
from tests.conftest import FIXTURES, ROOT, WEIGHTS, dicom_path, fixture_rows

pytest_plugins = ["tests.postgres_support"]  # its fixtures


SIDECAR = {"name": "test model", "weights_sha256": "ab" * 32}
OTHER_SIDECAR = {"name": "next model", "weights_sha256": "cd" * 32}


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    yield url
    dispose(url)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upgrade_from_empty_creates_the_schema(db_url):
    assert not has_schema(db_url)
    engine = migrate(db_url)
    assert current_revision(engine) == head_revision()
    columns = {c["name"] for c in inspect(engine).get_columns("audit_records")}
    assert columns == {c.name for c in AuditRecord.__table__.columns}
    indexed = {tuple(i["column_names"]) for i in inspect(engine).get_indexes("audit_records")}
    assert ("created_at",) in indexed and ("input_sha256",) in indexed


def test_models_and_migrations_agree(db_url):
    engine = migrate(db_url)
    command.check(alembic_config(engine))  # raises when autogenerate would write a new revision
    drifted = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["audit_records"].append_column(Column("patient_name", String(64)))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), drifted)
    assert [d[0] for d in differences] == ["add_column"]  # the comparison does see a model change


def test_events_round_trip_with_hashes_never_names(db_url):
    png = (FIXTURES / fixture_rows()[0]["fixture"]).read_bytes()
    record_prediction("dashboard", png, [0.7, 0.2, 0.1], sidecar=SIDECAR, warnings=["a note"], ood="unusual",
                      ood_distance=42.5, lung_field_plausible=True, url=db_url)
    record_rejection("cli", b"not an image", "The file (.txt) is not a PNG, JPEG or DICOM image.", sidecar=SIDECAR,
                     url=db_url)
    record_heatmap("dashboard", _sha(png), "Grad-CAM++", sidecar=SIDECAR, class_name="covid", lung_energy=0.81,
                   url=db_url)
    assert get_recorder(db_url).flush(60)
    frame = load_records(db_url).sort_values("id")
    assert list(frame["kind"]) == ["prediction", "rejection", "heatmap"]
    prediction, rejection, heat = (row for _, row in frame.iterrows())
    assert prediction["input_sha256"] == _sha(png) and heat["input_sha256"] == _sha(png)
    assert rejection["input_sha256"] == _sha(b"not an image") and "not a PNG" in rejection["error"]
    assert prediction["probabilities"] == {"covid": 0.7, "pneumonia": 0.2, "normal": 0.1}
    assert prediction["predicted_class"] == "covid" and prediction["p_covid"] == pytest.approx(0.7)
    assert prediction["ood"] == "unusual" and prediction["ood_distance"] == pytest.approx(42.5)
    assert prediction["lung_field_plausible"] == True and prediction["warnings"] == ["a note"]  # noqa: E712
    assert heat["heatmap_method"] == "Grad-CAM++" and heat["lung_energy"] == pytest.approx(0.81)
    assert set(frame["model_sha256"]) == {SIDECAR["weights_sha256"]} and set(frame["model_version"]) == {"ab" * 6}
    assert all(t.tzinfo is not None and abs(datetime.now(UTC) - t) < timedelta(minutes=5) for t in frame["created_at"])


def test_concurrent_writers_lose_nothing(db_url):
    """Threads sharing the process's recorder, and writers with their own transactions (as separate server
    processes would be), all at once."""
    threads, per_thread = 8, 40
    recorder = AuditRecorder(db_url)
    expected: set[str] = set()

    def queue_writer(t: int) -> None:
        for i in range(per_thread):
            recorder.record(AuditEvent(kind="prediction", interface="dashboard", input_sha256=_sha(b"q%d-%d" % (t, i)),
                                       probabilities={"covid": 0.5, "pneumonia": 0.25, "normal": 0.25},
                                       predicted_class="covid"), wait=True)

    def direct_writer(t: int) -> None:
        for i in range(0, per_thread, 4):
            write_events([AuditEvent(kind="rejection", interface="pacs", input_sha256=_sha(b"d%d-%d" % (t, j)),
                                     error="boom") for j in range(i, i + 4)], db_url)

    for t in range(threads):
        for i in range(per_thread):
            expected |= {_sha(b"q%d-%d" % (t, i)), _sha(b"d%d-%d" % (t, i))}
    workers = [threading.Thread(target=f, args=(t,)) for t in range(threads) for f in (queue_writer, direct_writer)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert recorder.flush(120)
    frame = load_records(db_url)
    assert len(frame) == 2 * threads * per_thread and recorder.dropped == 0
    assert set(frame["input_sha256"]) == expected
    assert frame["id"].is_unique


def test_a_sign_in_once_ended_stays_ended(db_url):
    """The state a restarted dashboard reads back (covidviz.ui.guard): two tabs' first writes at once make one
    row, an ended sign-in is never reopened by later activity, and the same person's other sign-in (another
    browser, another issued-at) is a sign-in of its own."""
    from concurrent.futures import ThreadPoolExecutor
    key = SignInKey("https://idp.example", "reader-1", 1_700_000_000)
    assert load_sign_in(key, db_url) is None
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda at: note_activity(key, at, db_url), (10.0, 11.0, 12.0, 13.0)))
    assert load_sign_in(key, db_url) in {StoredSignIn(at, False) for at in (10.0, 11.0, 12.0, 13.0)}
    end_sign_in(key, 30.0, "sign_out", db_url)
    note_activity(key, 40.0, db_url)
    assert load_sign_in(key, db_url) == StoredSignIn(30.0, True)
    assert load_sign_in(key._replace(issued_at=1_700_000_100), db_url) is None
    with migrate(db_url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM sign_ins")).scalar() == 1
    with pytest.raises(ValueError, match="end reason"):
        end_sign_in(key, 50.0, "logout", db_url)


def test_a_broken_database_is_logged_and_never_raises(tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    url = f"sqlite:///{blocked / 'audit.sqlite'}"
    recorder = get_recorder(url)
    with caplog.at_level(logging.ERROR, logger="covidviz.audit"):
        record_prediction("cli", b"x", [0.2, 0.3, 0.5], sidecar=SIDECAR, url=url)
        record_rejection("cli", b"y", "bad", sidecar=SIDECAR, url=url)
        assert recorder.flush(60)
    assert recorder.written == 0
    assert any("could not" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_full_queue_drops_rather_than_blocks(sqlite_url, caplog):
    recorder = AuditRecorder(sqlite_url, maxsize=1)
    recorder._ensure_thread = lambda: None  # no writer yet: the queue cannot drain
    with caplog.at_level(logging.ERROR, logger="covidviz.audit"):
        for i in range(3):
            recorder.record(AuditEvent(kind="rejection", interface="cli", input_sha256=None, error=str(i)))
    assert recorder.dropped == 2 and "queue full" in caplog.text


def test_dicom_outcome_stores_no_identifier(sqlite_url):
    """A real DICOM with a patient name, ID, birth date and institution, under a file name that carries them."""
    import pydicom

    from covidviz.model.predictor import Predictor
    path = dicom_path("RG1_UNCI.dcm")
    data = open(path, "rb").read()
    ds = pydicom.dcmread(path)
    predictor = Predictor(WEIGHTS)
    prediction = predictor.predict_bytes(data, f"{ds.PatientName}_{ds.PatientID}.dcm")
    record_outcome("pacs", data, prediction, predictor, url=sqlite_url)
    assert get_recorder(sqlite_url).flush(60)
    engine = migrate(sqlite_url)
    with engine.connect() as connection:
        stored = json.dumps([list(map(str, row)) for row in connection.execute(text("SELECT * FROM audit_records"))])
    assert _sha(data) in stored and prediction.label in stored
    for secret in (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.InstitutionName, "RG1_UNCI"):
        assert secret and secret not in stored, secret


def test_an_abstention_is_recorded_with_its_reason_and_no_class(sqlite_url, tmp_path):
    """A real JPEG of colour noise, under a file name carrying a made-up patient, scored by the real model: the
    record holds no class, the reason, and not the name."""
    import numpy as np
    from PIL import Image

    from covidviz.audit.query import load_records
    from covidviz.model.predictor import Predictor
    path = tmp_path / "Doe^Jane_CVZ-77.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(path)
    predictor = Predictor(WEIGHTS)
    prediction = predictor.predict_bytes(path.read_bytes(), path.name)
    assert prediction.label is None and prediction.abstained
    record_outcome("cli", path, prediction, predictor, url=sqlite_url)
    assert get_recorder(sqlite_url).flush(60)
    (row,) = load_records(sqlite_url).itertuples()
    assert row.kind == "prediction" and pd.isna(row.predicted_class) and row.abstained == prediction.abstained
    engine = migrate(sqlite_url)
    with engine.connect() as connection:
        stored = json.dumps([list(map(str, row)) for row in connection.execute(text("SELECT * FROM audit_records"))])
    assert "Doe" not in stored and "CVZ-77" not in stored


def test_flags_are_read_back_from_the_model_notes():
    import numpy as np

    from covidviz.lungs.field import LungCheck
    from covidviz.model.ood import OodGuard, lung_message, ood_message
    guard = OodGuard(mean=np.zeros(1), precision=np.eye(1), threshold=60.0, caution=40.0)
    assert flags_from_warnings([ood_message(70.0, guard)], True) == ("outlier", None)
    assert flags_from_warnings(["colour image", ood_message(50.0, guard)], True) == ("unusual", None)
    assert flags_from_warnings([], True) == ("typical", None) and flags_from_warnings([], False) == (None, None)
    no_lungs = lung_message(LungCheck(plausible=False, lung_share=0.01, reason="too little lung"))
    assert flags_from_warnings([no_lungs], True) == ("typical", False)


def _history(url: str) -> list[AuditEvent]:
    """Two model versions over three days, two interfaces, a rejection: known answers for every filter."""
    start = datetime(2024, 3, 1, 12, tzinfo=UTC)
    events = []
    for day in range(3):
        sidecar = SIDECAR if day < 2 else OTHER_SIDECAR
        for i, (label, p) in enumerate([("covid", [0.8, 0.1, 0.1]), ("normal", [0.1, 0.1, 0.8]),
                                        ("pneumonia", [0.2, 0.6, 0.2])]):
            events.append(AuditEvent(kind="prediction", interface="cli" if i else "dashboard",
                                     input_sha256=_sha(b"%d-%d" % (day, i)), model_name=sidecar["name"],
                                     model_sha256=sidecar["weights_sha256"],
                                     probabilities=dict(zip(CLASSES, p)), predicted_class=label,
                                     created_at=start + timedelta(days=day, minutes=i)))
    events.append(AuditEvent(kind="rejection", interface="pacs", input_sha256=_sha(b"bad"), error="=cmd|' /C calc'!A0",
                             model_sha256=OTHER_SIDECAR["weights_sha256"], created_at=start + timedelta(days=2, hours=1)))
    write_events(events, url)
    return events


def test_filters_in_the_database_equal_filters_on_the_table(db_url):
    _history(db_url)
    everything = load_records(db_url)
    assert len(everything) == 10
    cases = [
        AuditFilter(since=datetime(2024, 3, 2), until=datetime(2024, 3, 2, 23, 59)),
        AuditFilter(interfaces=("cli",)),
        AuditFilter(model_versions=("cdcd",)),
        AuditFilter(classes=("covid", "normal"), interfaces=("cli",)),
        AuditFilter(kinds=("rejection",)),
    ]
    sizes = []
    for flt in cases:
        in_db = load_records(db_url, flt)
        on_table = filter_records(everything, flt)
        assert sorted(in_db["id"]) == sorted(on_table["id"])
        sizes.append(len(in_db))
    assert sizes == [3, 6, 4, 3, 1]


def test_summary_separates_model_versions(sqlite_url):
    _history(sqlite_url)
    frame = load_records(sqlite_url)
    summary = score_summary(frame)
    assert list(summary["n"]) == [3, 3, 3]
    assert list(summary["model_version"]) == ["ab" * 6, "ab" * 6, "cd" * 6]
    assert summary["p_covid_mean"].iloc[0] == pytest.approx((0.8 + 0.1 + 0.2) / 3)
    counts = counts_over_time(frame)
    assert counts["count"].sum() == 10
    assert counts[counts["kind"] == "rejection"]["model_version"].tolist() == ["cd" * 6]


def test_exports_are_formula_safe_and_round_trip(sqlite_url):
    _history(sqlite_url)
    frame = load_records(sqlite_url)
    rows = list(csv.DictReader(io.StringIO(to_csv_bytes(frame).decode())))
    assert len(rows) == 10
    assert [r["error"] for r in rows if r["kind"] == "rejection"] == ["'=cmd|' /C calc'!A0"]
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    back = pd.read_parquet(io.BytesIO(to_parquet_bytes(frame)))
    assert sorted(back["input_sha256"]) == sorted(frame["input_sha256"])
    assert back["created_at"].dt.tz is not None


def test_audit_cli_lists_summarises_and_exports(sqlite_url, tmp_path, capsys):
    from covidviz.tools.cli import main
    _history(sqlite_url)
    assert main(["audit", "list", "--db", sqlite_url, "--interface", "pacs"]) == 0
    listed = capsys.readouterr().out
    assert "rejection" in listed and "prediction" not in listed
    assert main(["audit", "summary", "--db", sqlite_url, "--since", "2024-03-03"]) == 0
    summary = capsys.readouterr().out
    assert "4 records" in summary and "cdcdcdcdcdcd" in summary and "abababababab" not in summary
    out = tmp_path / "export.csv"
    assert main(["audit", "export", "--db", sqlite_url, "--model", "abab", "--out", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == 6
    assert main(["audit", "export", "--db", sqlite_url, "--out", str(tmp_path / "x.xlsx")]) == 1


def test_audit_page_shows_exactly_the_records(sqlite_url, monkeypatch):
    from streamlit.testing.v1 import AppTest
    events = _history(sqlite_url)
    monkeypatch.setenv("COVIDVIZ_DB_URL", sqlite_url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/audit.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert sorted(table["input_sha256"]) == sorted(e.input_sha256 for e in events)
    assert [m.value for m in at.metric][:3] == ["10", "9", "1"]
    at.multiselect(key="model_version").set_value(["cd" * 6]).run()
    table = at.dataframe[0].value
    assert sorted(table["input_sha256"]) == sorted(e.input_sha256 for e in events
                                                   if e.model_sha256 == OTHER_SIDECAR["weights_sha256"])
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.slow
def test_cli_predictions_are_recorded_and_a_dead_database_changes_nothing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = FIXTURES / fixture_rows()[0]["fixture"]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "broken.png").write_bytes(good.read_bytes()[:500])
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    outputs = {}
    for name, db in (("recorded", url), ("dead", "postgresql+psycopg://nobody@127.0.0.1:1/none")):
        result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(folder), "--json"],
                                capture_output=True, text=True, cwd=ROOT, timeout=300,
                                env={**__import__("os").environ, "COVIDVIZ_DB_URL": db})
        assert result.returncode == 1, result.stderr  # one input failed, as without the audit log
        outputs[name] = (result.stdout, result.stderr)
    assert outputs["recorded"][0] == outputs["dead"][0]
    assert "could not be written" in outputs["dead"][1]
    frame = load_records(url).sort_values("kind")
    dispose(url)
    assert list(frame["kind"]) == ["prediction", "rejection"] and set(frame["interface"]) == {"cli"}
    assert list(frame["input_sha256"]) == [_sha(good.read_bytes()), _sha(good.read_bytes()[:500])]
    assert "truncated or corrupt" in frame["error"].iloc[1]


@pytest.mark.slow
def test_diagnose_page_records_each_reading_once_and_each_heatmap_method_once(sqlite_url, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("COVIDVIZ_DB_URL", sqlite_url)
    png = (FIXTURES / fixture_rows()[2]["fixture"]).read_bytes()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.file_uploader(key="uploads").set_value([(fixture_rows()[2]["fixture"], png, "image/png"),
                                               ("corrupt.png", png[:400], "image/png")])
    at.run()
    at.run()  # a rerun (any click) reads nothing anew
    at.selectbox(key="method").set_value("EigenCAM").run()
    at.selectbox(key="method").set_value("Grad-CAM").run()
    assert not at.exception, [e.value for e in at.exception]
    assert get_recorder(sqlite_url).flush(60)
    frame = load_records(sqlite_url)
    kinds = frame.groupby("kind")["input_sha256"].apply(list).to_dict()
    assert kinds["prediction"] == [_sha(png)] and kinds["rejection"] == [_sha(png[:400])]
    assert sorted(frame[frame["kind"] == "heatmap"]["heatmap_method"]) == ["EigenCAM", "Grad-CAM"]
    assert set(frame[frame["kind"] == "heatmap"]["input_sha256"]) == {_sha(png)}
    assert set(frame["interface"]) == {"dashboard"}
