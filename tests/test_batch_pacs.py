"""Archive scoring from a PACS (``batch pacs:QUERY``): the query checked with messages that list what is
accepted; against a real Orthanc, the frontal chest instances listed (the rest counted), each fetched by
WADO-RS and scored on a real local Ray with the same numbers as ``Predictor.predict_bytes`` on the same
bytes; a second run skips them all; the source pickles into tasks without showing the password."""

from __future__ import annotations

import hashlib
import logging
import pickle

import pandas as pd
import pytest

from covidviz import CLASSES
from covidviz.interop.archive import ArchiveQueryError, archive_source, instance_key, parse_archive_query, parse_key
from covidviz.interop.orthanc import free_port
from covidviz.interop.pacs import ImageRef
from covidviz.interop.pacs_session import ENV_PASSWORD, ENV_URL, ENV_USER, PacsError, PacsSettings
from tests.conftest import WEIGHTS
from tests.orthanc_support import pacs, requires_orthanc  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


def _key(dataset) -> str:
    return f"dicomweb:{dataset.StudyInstanceUID}/{dataset.SeriesInstanceUID}/{dataset.SOPInstanceUID}"


@pytest.fixture(scope="module")
def pacs_env(pacs):  # noqa: F811
    """The server in the environment, as a user sets it for ``batch pacs:...``, and a throwaway audit log."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in pacs.environment.items():
            patch.setenv(key, value)
        yield pacs


@pytest.fixture(scope="module")
def audit_url(tmp_path_factory):
    from covidviz.audit.db import dispose
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.sqlite'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COVIDVIZ_DB_URL", url)
        yield url
    dispose(url)


# --- no server -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, filters, limit", [
    ("modality=CR&date=20240101-20240131&accession=X",
     {"ModalitiesInStudy": "CR", "StudyDate": "20240101-20240131", "AccessionNumber": "X"}, None),
    ("date=2024-03-01..", {"StudyDate": "20240301-"}, None),
    ("date=-20240131", {"StudyDate": "-20240131"}, None),
    ("date=20240301", {"StudyDate": "20240301"}, None),
    ("accession=exam+Number&limit=5", {"AccessionNumber": "exam Number"}, 5),
    ("study=1.2.840.10008.1&modality=dx", {"StudyInstanceUID": "1.2.840.10008.1", "ModalitiesInStudy": "DX"}, None),
    ("", {}, None),
])
def test_queries_become_qido_filters(query, filters, limit):
    parsed = parse_archive_query(query)
    assert parsed.filters == filters and parsed.limit == limit


@pytest.mark.parametrize("query, says", [
    ("colour=red", r"Unknown key 'colour'.*Accepted keys: modality=CR.*date=.*accession=.*study=.*limit="),
    ("modality", r"not of the form key=value.*Accepted keys"),
    ("modality=CR&modality=DX", r"gives 'modality' twice"),
    ("modality=", r"without a value: write modality=CR"),
    ("date=yesterday", r"not a calendar day: use YYYY-MM-DD or YYYYMMDD"),
    ("date=20240230-20240301", r"not a calendar day"),
    ("modality=chest x-ray", r"not a DICOM modality code"),
    ("study=abc", r"Study Instance UID, digits and dots"),
    ("limit=none", r"limit= takes a whole number"),
])
def test_a_bad_query_says_what_is_wrong_and_what_is_accepted(query, says):
    with pytest.raises(ArchiveQueryError, match=says):
        parse_archive_query(query)


def test_keys_name_an_instance_by_its_three_uids_and_nothing_else_is_a_key():
    ref = ImageRef("1.2.3", "1.2.3.4", "1.2.3.4.5", "", "CR", 1, 1, "PA", "CHEST", 2000, 2000, None)
    assert parse_key(instance_key(ref)) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")
    for bad in ("/data/chest.dcm", "dicomweb:1.2.3/1.2.3.4", "dicomweb:1.2/x/1.3", "dicomweb:1/2/3/4"):
        with pytest.raises(ValueError, match="dicomweb:STUDY/SERIES/INSTANCE"):
            parse_key(bad)


def test_the_source_pickles_as_plain_data_and_never_shows_the_password():
    settings = PacsSettings(url="https://pacs.example.org/dicom-web", user="reader", password="hunter2-secret")
    source = archive_source("modality=CR&accession=ACC-4711", settings)
    source._listed = ("dicomweb:1.2/1.3/1.4",)  # as after keys(): the list stays with the driver
    shipped = pickle.loads(pickle.dumps(source))
    assert shipped.settings == settings and shipped.query == source.query and shipped._listed is None
    for shown in (repr(source), str(source), source.description, repr(shipped)):
        assert "hunter2-secret" not in shown and "ACC-4711" not in shown


def test_the_batch_command_refuses_a_bad_query_before_starting_anything(tmp_path, monkeypatch, capsys):
    from covidviz.tools.cli import main
    monkeypatch.setenv(ENV_URL, "http://127.0.0.1:9/dicom-web")
    out = tmp_path / "results.parquet"
    assert main(["batch", "pacs:modality=CR&colour=red", "--out", str(out), "--no-audit"]) == 1
    err = capsys.readouterr().err
    assert "Unknown key 'colour'" in err and "accession=" in err and "Traceback" not in err
    monkeypatch.delenv(ENV_URL)
    assert main(["batch", "pacs:modality=CR", "--out", str(out), "--no-audit"]) == 1
    assert ENV_URL in capsys.readouterr().err
    assert not out.exists()


# --- a real Orthanc --------------------------------------------------------------------------------------------------


@requires_orthanc
def test_listing_keeps_the_frontal_chest_instances_and_counts_the_rest(pacs_env, caplog):
    caplog.set_level(logging.DEBUG)
    chest, extremity, demo = pacs_env.chest, pacs_env.extremity, pacs_env.demo
    source = archive_source("modality=CR")  # CR studies: the chest, the extremity, the two demo studies
    keys = source.keys()
    assert sorted(keys) == sorted(map(_key, (chest, demo[0], demo[1])))  # not the extremity, not the lateral
    assert (source.studies, source.without_frontal, source.left_out) == (4, 1, 2)
    assert source.description.startswith("3 frontal chest radiographs in 4 studies") and "2 other" in \
        source.description
    assert source.keys() == keys
    everything = archive_source("")
    assert sorted(everything.keys()) == sorted(keys) and everything.studies == 5  # + the CT study
    assert sorted(archive_source("date=20240311-20240312").keys()) == sorted(map(_key, demo[:2]))
    assert archive_source(f"accession={str(chest.AccessionNumber).replace(' ', '+')}").keys() == [_key(chest)]
    one = archive_source("modality=CR&limit=1")
    assert len(one.keys()) <= 1 and one.studies == 1
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records
    for dataset in (chest, extremity, *demo):
        for secret in (str(dataset.PatientName), dataset.PatientID, dataset.PatientBirthDate):
            assert secret and secret not in logged, secret
    info = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert chest.SOPInstanceUID not in info  # UIDs at DEBUG only


@requires_orthanc
def test_read_gives_the_stored_instance_and_a_missing_one_says_so(pacs_env):
    import pydicom
    source = archive_source(f"study={pacs_env.chest.StudyInstanceUID}")
    data = pickle.loads(pickle.dumps(source)).read(_key(pacs_env.chest))  # as a Ray task does
    retrieved = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert retrieved.SOPInstanceUID == pacs_env.chest.SOPInstanceUID
    assert retrieved.pixel_array.tobytes() == pacs_env.chest.pixel_array.tobytes()
    with pytest.raises(PacsError, match="HTTP 404"):
        source.read(f"dicomweb:{pacs_env.chest.StudyInstanceUID}/1.2.3/1.2.3.4")


@requires_orthanc
def test_an_unreachable_or_refusing_server_stops_the_job_with_its_reason(pacs_env, tmp_path, monkeypatch):
    from covidviz.tools.batch import run_batch
    from covidviz.tools.batch_sources import BatchSourceError
    monkeypatch.setenv(ENV_URL, f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(BatchSourceError, match=r"cannot be reached \(connection refused\)"):
        run_batch("pacs:modality=CR", tmp_path / "out.parquet", weights_dir=WEIGHTS, progress=None, audit=False)
    monkeypatch.setenv(ENV_URL, pacs_env.orthanc.dicomweb_url)
    monkeypatch.setenv(ENV_USER, pacs_env.environment[ENV_USER])
    monkeypatch.setenv(ENV_PASSWORD, "wrong-password-123")
    with pytest.raises(BatchSourceError, match="HTTP 401") as refused:
        run_batch("pacs:modality=CR", tmp_path / "out.parquet", weights_dir=WEIGHTS, progress=None, audit=False)
    assert "wrong-password-123" not in str(refused.value)
    assert not (tmp_path / "out.parquet").exists()


# --- batch on a real local Ray ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session(pacs_env, audit_url):
    import ray

    from covidviz.tools.batch import start_ray
    start_ray(None, workers=1, threads=1, ship_code=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(ray_session, tmp_path_factory):
    from covidviz.tools.batch import run_batch
    out = tmp_path_factory.mktemp("results") / "results.parquet"
    summary = run_batch("pacs:modality=CR", out, weights_dir=WEIGHTS, workers=1, threads=1, batch_size=4,
                        progress=None)
    return out, summary


@pytest.mark.slow
@requires_orthanc
def test_batch_scores_every_frontal_chest_instance_as_predict_bytes_does(first_run, pacs_env):
    from covidviz.model.predictor import Predictor
    out, summary = first_run
    results = pd.read_parquet(out)
    expected_keys = sorted(map(_key, (pacs_env.chest, pacs_env.demo[0], pacs_env.demo[1])))
    assert sorted(results["file"]) == expected_keys
    assert summary.total == summary.scored == 3 and not summary.rejected and summary.skipped == 0
    predictor = Predictor(WEIGHTS)
    source = archive_source("modality=CR")
    for row in results.itertuples():
        data = source.read(row.file)  # the same WADO-RS retrieve, on the driver
        assert row.sha256 == hashlib.sha256(data).hexdigest()  # the task scored exactly these bytes
        expected = predictor.predict_bytes(data, row.file)
        assert expected.error is None and pd.isna(row.error) and row.label == expected.label
        assert list(row.warnings) == list(expected.warnings)
        for c in CLASSES:
            assert abs(row.probabilities[c] - expected.probabilities[c]) <= 1e-6, (row.file, c)


@pytest.mark.slow
@requires_orthanc
def test_a_second_run_over_the_same_query_skips_every_instance(first_run):
    from covidviz.tools.batch import run_batch
    out, _ = first_run
    again = run_batch("pacs:modality=CR", out, weights_dir=WEIGHTS, workers=1, threads=1, progress=None)
    assert again.total == again.skipped == 3 and again.scored == 0 and not again.rejected
    wider = run_batch("pacs:", out, weights_dir=WEIGHTS, workers=1, threads=1, progress=None)
    assert wider.total == wider.skipped == 3  # the CT study adds no frontal chest radiograph
    assert len(pd.read_parquet(out)) == 3
