"""The DICOMweb connection against a real Orthanc: search, score, store back, find the results in Orthanc;
clear messages when the server is unreachable, refuses, or holds no chest radiograph; no patient
identifier in any log line; the PACS worklist page on the same server."""

from __future__ import annotations

import json
import logging
import re

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes

from covidviz import CLASS_TITLES, CLASSES
from covidviz.interop.dicom_results import SC_SERIES_DESCRIPTION, SR_SERIES_DESCRIPTION
from covidviz.interop.orthanc import free_port
from covidviz.interop.pacs import frontal_chest_images, qido_date, retrieve, search_studies, study_filters
from covidviz.interop.pacs_session import ENV_PASSWORD, ENV_URL, ENV_USER, PacsError, PacsSettings, connect
from covidviz.interop.worklist import score_study
from tests.conftest import ROOT, dicom_path
from tests.orthanc_support import CREDENTIALS, pacs, requires_orthanc  # noqa: F401  (fixture)

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def settings(pacs) -> PacsSettings:  # noqa: F811
    return PacsSettings.from_env(environ=pacs.environment)


@pytest.fixture(scope="module")
def client(settings):
    return connect(settings)


# --- settings and filters (no server) --------------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_never_show_secrets():
    env = {ENV_URL: "https://pacs.example.org/dicom-web/", ENV_USER: "reader", ENV_PASSWORD: "hunter2-secret"}
    settings = PacsSettings.from_env(environ=env)
    assert settings.url == "https://pacs.example.org/dicom-web" and settings.user == "reader"
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in settings.where
    assert PacsSettings.from_env(url="http://other:8042/dicom-web", environ=env).url == "http://other:8042/dicom-web"
    with pytest.raises(PacsError, match=ENV_URL):
        PacsSettings.from_env(environ={})
    with pytest.raises(PacsError, match="not in the URL") as refused:
        PacsSettings.from_env(environ={ENV_URL: "http://reader:hunter2-secret@pacs:8042/dicom-web"})
    assert "hunter2-secret" not in str(refused.value)
    with pytest.raises(PacsError, match="http:// or https://"):
        PacsSettings.from_env(environ={ENV_URL: "pacs.example.org"})
    with pytest.raises(PacsError, match="both"):
        PacsSettings.from_env(environ={ENV_URL: "http://pacs/dicom-web", ENV_USER: "reader"})


@pytest.mark.parametrize("typed, sent", [("2024-03-01", "20240301"), ("20240301", "20240301"),
                                         ("2024-03-01..2024-03-31", "20240301-20240331"),
                                         ("2024-03-01..", "20240301-"), ("..20240331", "-20240331")])
def test_dates_are_checked_and_sent_as_qido_ranges(typed, sent):
    assert qido_date(typed) == sent


@pytest.mark.parametrize("typed", ["2024-02-30", "yesterday", "2024-03", "..", "1..2..3"])
def test_a_date_that_is_not_a_day_is_refused_with_the_accepted_forms(typed):
    with pytest.raises(PacsError, match="YYYY-MM-DD|2024-03-01"):
        qido_date(typed)


def test_filters_refuse_what_is_not_a_modality_or_an_accession_number():
    assert study_filters(modality="cr", accession=" A123 ") == {"ModalitiesInStudy": "CR", "AccessionNumber": "A123"}
    with pytest.raises(PacsError, match="modality"):
        study_filters(modality="chest x-ray")
    with pytest.raises(PacsError, match="16 characters"):
        study_filters(accession="A" * 17)


# --- a real Orthanc --------------------------------------------------------------------------------------------------


@requires_orthanc
def test_search_by_accession_date_and_modality(pacs, settings, client):  # noqa: F811
    everything = search_studies(client, settings)
    chest, extremity, ct = pacs.chest, pacs.extremity, pacs.ct
    demo_a, demo_b = pacs.demo[0], pacs.demo[1]
    assert {s.study_uid for s in everything} == {d.StudyInstanceUID for d in (chest, extremity, ct, demo_a, demo_b)}
    by_accession = search_studies(client, settings, study_filters(accession=str(chest.AccessionNumber)))
    assert [s.study_uid for s in by_accession] == [chest.StudyInstanceUID]  # "exam Number": a space in it
    assert by_accession[0].accession == chest.AccessionNumber and "CR" in by_accession[0].modalities
    by_date = search_studies(client, settings, study_filters(date_text="2024-03-10..2024-03-12"))
    assert {s.study_uid for s in by_date} == {demo_a.StudyInstanceUID, demo_b.StudyInstanceUID}
    assert [s.study_uid for s in search_studies(client, settings, study_filters(modality="CT"))] == \
        [ct.StudyInstanceUID]
    assert search_studies(client, settings, study_filters(accession="NO-SUCH-ACC")) == []
    assert len(search_studies(client, settings, limit=2)) == 2


@requires_orthanc
def test_an_unreachable_server_says_so():
    settings = PacsSettings(url=f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(PacsError, match=r"cannot be reached \(connection refused\).*COVIDVIZ_DICOMWEB_URL"):
        search_studies(connect(settings), settings)


@requires_orthanc
def test_wrong_credentials_are_refused_without_echoing_them(pacs):  # noqa: F811
    wrong = PacsSettings(url=pacs.orthanc.dicomweb_url, user=CREDENTIALS[0], password="wrong-password-123")
    with pytest.raises(PacsError, match=r"HTTP 401.*COVIDVIZ_DICOMWEB_USER") as refused:
        search_studies(connect(wrong), wrong)
    assert "wrong-password-123" not in str(refused.value)
    anonymous = PacsSettings(url=pacs.orthanc.dicomweb_url)
    with pytest.raises(PacsError, match="HTTP 401"):
        search_studies(connect(anonymous), anonymous)


@requires_orthanc
def test_an_address_that_is_not_the_dicomweb_root_says_what_it_should_be(pacs):  # noqa: F811
    root = PacsSettings(url=pacs.orthanc.url, user=CREDENTIALS[0], password=CREDENTIALS[1])
    with pytest.raises(PacsError, match="DICOMweb root"):
        search_studies(connect(root), root)


@requires_orthanc
def test_studies_without_a_frontal_chest_radiograph_say_why(pacs, settings, client, predictor):  # noqa: F811
    studies = {s.study_uid: s for s in search_studies(client, settings)}
    extremity = score_study(client, settings, predictor, studies[pacs.extremity.StudyInstanceUID])
    assert not extremity.images
    assert "No frontal chest radiograph" in extremity.note and "body part EXTREMITY, not chest" in extremity.note
    ct = score_study(client, settings, predictor, studies[pacs.ct.StudyInstanceUID])
    assert not ct.images and "is CT, not a radiograph" in ct.note
    two_views = frontal_chest_images(client, settings, studies[pacs.demo[1].StudyInstanceUID])
    assert [r.sop_uid for r in two_views.frontal] == [pacs.demo[1].SOPInstanceUID]
    assert any("lateral view" in reason for reason in two_views.skipped)


@requires_orthanc
def test_retrieve_gives_the_stored_image(pacs, settings, client):  # noqa: F811
    studies = search_studies(client, settings, study_filters(accession=str(pacs.chest.AccessionNumber)))
    ref = frontal_chest_images(client, settings, studies[0]).frontal[0]
    data = retrieve(client, settings, ref)
    retrieved = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert retrieved.SOPInstanceUID == pacs.chest.SOPInstanceUID
    assert retrieved.pixel_array.tobytes() == pacs.chest.pixel_array.tobytes()


@requires_orthanc
def test_score_store_and_find_the_results_in_orthanc_with_no_identifier_logged(pacs, settings, client, predictor,  # noqa: F811
                                                                               caplog):
    """The whole chain on the real chest radiograph: its scores equal covidviz's for the same file, its SC and
    SR land in its study (found through Orthanc's own API), carry its patient, and no log line names them."""
    caplog.set_level(logging.DEBUG)  # every logger, third-party ones included
    chest = pacs.chest
    study = search_studies(client, settings, study_filters(accession=str(chest.AccessionNumber)))[0]
    scored = score_study(client, settings, predictor, study, store_results=True)
    assert scored.note is None and len(scored.images) == 1
    image = scored.images[0]
    expected = predictor.predict_bytes(open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "chest.dcm")
    for c in CLASSES:
        assert image.probabilities[c] == pytest.approx(expected.probabilities[c], abs=1e-5)
    assert image.stored == 2 and image.error is None

    series = json.loads(pacs.rest(f"/studies/{_orthanc_id(pacs, chest.StudyInstanceUID)}/series"))
    found = {s["MainDicomTags"].get("SeriesDescription"): s for s in series}
    assert {SC_SERIES_DESCRIPTION, SR_SERIES_DESCRIPTION} <= set(found)
    sc = _stored_instance(pacs, found[SC_SERIES_DESCRIPTION])
    sr = _stored_instance(pacs, found[SR_SERIES_DESCRIPTION])
    assert sc.SOPClassUID == SC_STORAGE and sr.SOPClassUID == COMPREHENSIVE_SR
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == chest.SOPInstanceUID
    for result in (sc, sr):
        assert result.StudyInstanceUID == chest.StudyInstanceUID
        assert (result.PatientName, result.PatientID, result.PatientBirthDate) == \
            (chest.PatientName, chest.PatientID, chest.PatientBirthDate)
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    groups = {g.finding_type.value: g for g in report.content.get_image_measurement_groups() if g.finding_type}
    for c, code in (("covid", "840539006"), ("pneumonia", "233604007"), ("normal", "17621005")):
        assert groups[code].get_measurements(name=codes.DCM.Probability)[0].value == pytest.approx(
            image.probabilities[c], abs=1e-12)
    assert sr.VerificationFlag == "UNVERIFIED"

    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the path logs nothing at all: this check would be empty"
    for secret in (str(chest.PatientName), chest.PatientName.family_name, chest.PatientID, chest.PatientBirthDate):
        assert secret and secret not in logged, secret


def _orthanc_id(server, study_uid: str) -> str:
    found = json.loads(server.rest("/tools/lookup", study_uid.encode()))
    return next(item["ID"] for item in found if item["Type"] == "Study")


def _stored_instance(server, series: dict) -> pydicom.Dataset:
    instance = series["Instances"][0]
    return pydicom.dcmread(pydicom.filebase.DicomBytesIO(server.rest(f"/instances/{instance}/file")))


@requires_orthanc
def test_cli_search_and_score_name_studies_without_patient_data(pacs, monkeypatch, capsys):  # noqa: F811
    from covidviz.tools.cli import main
    for key, value in pacs.environment.items():
        monkeypatch.setenv(key, value)
    assert main(["pacs", "search", "--modality", "CR"]) == 0
    listed = capsys.readouterr().out
    assert pacs.chest.StudyInstanceUID in listed and "exam Number" in listed and pacs.ct.StudyInstanceUID not in listed
    assert main(["pacs", "score", "--accession", "CVZTEST02", "--json"]) == 0
    scored = capsys.readouterr().out
    rows = [json.loads(line) for line in scored.splitlines()]
    assert len(rows) == 1 and rows[0]["label"] in CLASSES and rows[0]["stored"] == 0  # the lateral is left out
    assert main(["pacs", "score", "--study", pacs.extremity.StudyInstanceUID]) == 0
    not_chest = capsys.readouterr().out
    assert "NOT SCORED" in not_chest and "not chest" in not_chest
    for dataset in (pacs.chest, pacs.extremity, pacs.demo[1]):
        for secret in (str(dataset.PatientName), dataset.PatientID):
            assert secret not in listed + scored + not_chest
    monkeypatch.setenv(ENV_PASSWORD, "wrong")
    assert main(["pacs", "search"]) == 2
    assert "HTTP 401" in capsys.readouterr().err


# --- the dashboard page ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@requires_orthanc
def test_worklist_page_lists_scores_opens_in_diagnose_and_stores(pacs, monkeypatch, predictor):  # noqa: F811
    from streamlit.testing.v1 import AppTest
    for key, value in pacs.environment.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()  # st.navigation registers the pages (and their URL paths) on the first run
    at.switch_page("app_pages/pacs_worklist.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    shown = set(table["accession"])
    assert {"exam Number", "FUJI95706", "CVZTEST01", "CVZTEST02"} <= shown
    chest = table[table["accession"] == "exam Number"].iloc[0]
    expected = predictor.predict_bytes(open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "chest.dcm")
    for c in CLASSES:
        assert chest[f"p_{c}"] == pytest.approx(expected.probabilities[c], abs=1e-4)
    assert "not chest" in table[table["accession"] == "FUJI95706"].iloc[0]["note"]
    page = table.to_csv() + " ".join(e.value for kind in ("markdown", "caption", "info") for e in at.get(kind))
    for dataset in (pacs.chest, pacs.extremity, *pacs.demo):
        assert str(dataset.PatientName) not in page and dataset.PatientID not in page

    option = next(o for o in at.selectbox(key="pacs_image").options if "exam Number" in o)
    at.selectbox(key="pacs_image").set_value(option).run()
    at.button(key="pacs_store").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Stored 2 result objects" in s.value for s in at.success), [e.value for e in at.error]

    at.selectbox(key="pacs_image").set_value(option)
    at.button(key="pacs_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Opened from the PACS" in i.value for i in at.info)
    outputs = [m.value for m in at.markdown if m.value.startswith("**Model output:**")]
    assert outputs == [f"**Model output:** {CLASS_TITLES[expected.label]} "
                       f"({expected.probabilities[expected.label]:.1%})"]
    assert {"dicom_sc0", "dicom_sr0"} <= _download_keys(at)  # a PACS image is DICOM: its results can be saved


def _download_keys(at) -> set[str]:
    return {b.proto.id.rsplit("-", 1)[-1] for b in at.get("download_button")}


def test_worklist_page_explains_how_to_connect_when_no_server_is_set(monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.delenv(ENV_URL, raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()  # st.navigation registers the pages (and their URL paths) on the first run
    at.switch_page("app_pages/pacs_worklist.py").run()
    assert not at.exception
    assert any(ENV_URL in i.value and "pacs demo" in i.value for i in at.info)


@pytest.mark.slow
@requires_orthanc
def test_the_one_command_demo_loads_scores_and_stores(capsys):
    """What the README promises: a throwaway Orthanc with the example X-rays, searched, scored and stored."""
    from covidviz.tools.cli import main
    assert main(["pacs", "demo", "--once", "--port", str(free_port())]) == 0
    out = capsys.readouterr().out
    assert "holding 9 images" in out  # six example X-rays, pydicom-data's chest, extremity and CT
    scored = [line for line in out.splitlines() if "\tstored 2 result objects" in line]
    assert len(scored) == 7 and all(re.search(r"\t(covid|pneumonia|normal)\t", line) for line in scored)
    assert out.count("NOT SCORED") == 2 and "Demo^Patient" not in out
