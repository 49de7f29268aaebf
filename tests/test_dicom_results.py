"""DICOM results of a real radiograph: written to memory and read back, every required attribute there,
SOP classes, UIDs and references right, the SR's numbers equal to the reading, dciodvfy without errors;
from the CLI (``predict --dicom-out``) and as downloads on the Diagnose page."""

from __future__ import annotations

import io
import os
import re
import subprocess
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from covidviz import CLASSES
from covidviz.explain.reading import heatmap, read_xray
from covidviz.interop.dicom_results import (
    CLASS_CODES,
    HEATMAP_CLASS,
    LUNG_ENERGY,
    NO_CLASS_REASON,
    OOD_DISTANCE,
    OUT_OF_DISTRIBUTION,
    OUTSIDE_LUNGS,
    PREDICTED_CLASS,
    SCHEME,
    burn_in,
    dicom_results,
    result_overlay,
)
from covidviz.interop.inputs import DicomResultError, HeatmapChoice, source_header
from covidviz.interop.part10 import part10
from covidviz.interop.sample_dicom import Invented, radiograph_from_png
from covidviz.io.loading import load_xray
from covidviz.lungs.field import LOW_LUNG_SHARE
from covidviz.model.predictor import Predictor
from tests.conftest import FIXTURES, ROOT, dicom_path, fixture_rows

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
DCIODVFY = Path("/usr/bin/dciodvfy")
requires_dciodvfy = pytest.mark.skipif(not DCIODVFY.exists() and not os.environ.get("CI"),
                                       reason="dciodvfy (Debian dicom3tools) is not installed (make test installs it)")


def _results(predictor: Predictor, data: bytes, name: str, choice: HeatmapChoice = HeatmapChoice()):
    reading = read_xray(predictor, load_xray(data, name), name, predictor.guard)
    cam = heatmap(reading, predictor, choice.method, choice.class_for(reading, predictor.decision), choice.scale)
    results = dicom_results(source_header(data, name), reading, predictor, choice, cam=cam)
    return reading, cam, results


@pytest.fixture(scope="module")
def chest(predictor):
    """The real CR chest PA of pydicom-data, read and turned into results, both written to bytes and read back."""
    data = open(dicom_path("RG1_UNCI.dcm"), "rb").read()
    reading, cam, results = _results(predictor, data, "chest.dcm")
    source = pydicom.dcmread(io.BytesIO(data))
    sc = pydicom.dcmread(io.BytesIO(part10(results.sc)))
    sr = pydicom.dcmread(io.BytesIO(part10(results.sr)))
    return source, reading, cam, sc, sr


def test_sop_classes_uids_and_series(chest):
    source, _, _, sc, sr = chest
    assert sc.SOPClassUID == sc.file_meta.MediaStorageSOPClassUID == SC_STORAGE
    assert sr.SOPClassUID == sr.file_meta.MediaStorageSOPClassUID == COMPREHENSIVE_SR
    assert (sc.Modality, sr.Modality) == ("OT", "SR")
    uids = [sc.SOPInstanceUID, sc.SeriesInstanceUID, sr.SOPInstanceUID, sr.SeriesInstanceUID]
    assert all(UID(u).is_valid for u in uids) and len(set(uids)) == 4
    assert not set(uids) & {source.SOPInstanceUID, source.SeriesInstanceUID, source.StudyInstanceUID}
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == source.StudyInstanceUID  # same study, new series
    assert sc.file_meta.MediaStorageSOPInstanceUID == sc.SOPInstanceUID


def test_patient_and_study_are_copied_from_the_source(chest):
    source, _, _, sc, sr = chest
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "SpecificCharacterSet"):
        assert sc[keyword].value == sr[keyword].value == source[keyword].value, keyword
    assert str(source.PatientName)  # the fixture does carry a name, an ID and a birth date
    assert source.PatientID and source.PatientBirthDate


SC_REQUIRED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # Patient
               "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
               "Modality", "SeriesInstanceUID", "SeriesNumber",  # General Series
               "Manufacturer", "ConversionType",  # General Equipment, SC Equipment
               "InstanceNumber", "PatientOrientation",  # General Image
               "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
               "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelData",  # Image Pixel
               "SOPClassUID", "SOPInstanceUID")  # SOP Common
SR_REQUIRED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
               "Modality", "SeriesInstanceUID", "SeriesNumber", "ReferencedPerformedProcedureStepSequence",
               "Manufacturer", "InstanceNumber", "CompletionFlag", "VerificationFlag", "ContentDate", "ContentTime",
               "PerformedProcedureCodeSequence", "CurrentRequestedProcedureEvidenceSequence",
               "ValueType", "ConceptNameCodeSequence", "ContinuityOfContent", "ContentTemplateSequence",
               "ContentSequence", "SOPClassUID", "SOPInstanceUID")


def test_every_required_attribute_is_present(chest):
    _, _, _, sc, sr = chest
    assert [k for k in SC_REQUIRED if k not in sc] == []
    assert [k for k in SR_REQUIRED if k not in sr] == []
    assert (sc.SamplesPerPixel, sc.PhotometricInterpretation, sc.BitsAllocated) == (3, "RGB", 8)
    assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)


def test_references_point_at_the_source_and_the_sc(chest):
    source, _, _, sc, sr = chest
    (reference,) = sc.SourceImageSequence
    assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == \
        (source.SOPClassUID, source.SOPInstanceUID)
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    listed = {(s.SeriesInstanceUID, i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
              for s in evidence.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert listed == {(source.SeriesInstanceUID, source.SOPClassUID, source.SOPInstanceUID),
                      (sc.SeriesInstanceUID, SC_STORAGE, sc.SOPInstanceUID)}
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    for group in report.content.get_image_measurement_groups():
        (image,) = group.source_images
        assert image.referenced_sop_instance_uid == source.SOPInstanceUID


def test_the_report_states_what_the_reading_found(chest, predictor):
    source, reading, cam, _, sr = chest
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    groups = report.content.get_image_measurement_groups()
    by_class = {g.finding_type.value: g for g in groups if g.finding_type}
    expected = predictor.predict_bytes(open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "chest.dcm")
    for k, c in enumerate(CLASSES):
        (probability,) = by_class[CLASS_CODES[c].value].get_measurements(name=codes.DCM.Probability)
        assert probability.value == float(reading.probabilities[k])  # the float itself (FloatingPointValue)
        assert probability.value == pytest.approx(expected.probabilities[c], abs=1e-5)  # the predictor's number
        assert probability.unit.value == "1"
    (summary,) = [g for g in groups if not g.finding_type]
    evaluations = {q.name.value: q.value for q in summary.get_qualitative_evaluations()}
    assert expected.abstained is None  # a real chest film: a class is given, by the model's decision rule
    assert evaluations[PREDICTED_CLASS.value].value == CLASS_CODES[expected.label].value
    assert evaluations[OUT_OF_DISTRIBUTION.value].meaning == ("Yes" if reading.is_outlier else "No")
    assert evaluations[HEATMAP_CLASS.value].value == CLASS_CODES[expected.label].value  # the default map
    share = reading.lung_share(cam)
    measured = {m.name.value: m.value for m in summary.get_measurements()}
    assert measured[LUNG_ENERGY.value] == pytest.approx(share, abs=1e-12)
    assert evaluations[OUTSIDE_LUNGS.value].meaning == ("Yes" if share < LOW_LUNG_SHARE else "No")
    assert measured[OOD_DISTANCE.value] == pytest.approx(reading.ood_distance, abs=1e-9)


def test_algorithm_identification_and_unverified_status(chest, predictor):
    _, _, _, _, sr = chest
    text = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
            for item in hd.sr.utils.find_content_items(sr, value_type=hd.sr.ValueTypeValues.TEXT, recursive=True)}
    assert text["Algorithm Name"] == predictor.sidecar["name"]
    assert text["Algorithm Version"] == predictor.sidecar["weights_sha256"] and len(text["Algorithm Version"]) == 64
    parameters = [item.TextValue for item in hd.sr.utils.find_content_items(
        sr, name=codes.DCM.AlgorithmParameters, recursive=True)]
    assert any("Grad-CAM" in p for p in parameters) and any("temperature" in p for p in parameters)
    assert (sr.VerificationFlag, sr.CompletionFlag) == ("UNVERIFIED", "COMPLETE")
    assert "VerifyingObserverSequence" not in sr
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence] == [SCHEME]


def test_the_sc_is_the_overlay_with_the_warning_burnt_in(chest, predictor):
    source, reading, cam, sc, _ = chest
    choice = HeatmapChoice()
    k = choice.class_for(reading, predictor.decision)
    drawn = result_overlay(reading, cam, choice, reading.probability(k), k)
    assert np.array_equal(sc.pixel_array, drawn)
    assert (sc.Rows, sc.Columns) == reading.xray.pixels.shape  # 1955 x 1841: under the size cap, full resolution
    assert "NOT FOR DIAGNOSTIC USE" in sc.SeriesDescription and "Not for diagnostic use" in sc.ImageComments
    assert sc.BurnedInAnnotation == "NO"  # the text does not identify the patient
    assert sc.LossyImageCompression == source.LossyImageCompression == "01"  # derived from a lossy image
    assert sc.ImageType[:2] == ["DERIVED", "SECONDARY"]


def test_burnt_in_text_sits_in_the_top_left_corner_only():
    gray = np.full((600, 500, 3), 128, np.uint8)
    marked = burn_in(gray, ["NOT FOR DIAGNOSTIC USE", "second line"])
    changed = np.argwhere((marked != gray).any(axis=2))
    assert len(changed) > 500  # legible text, not a speck
    assert changed[:, 0].max() < 0.25 * 600 and changed[:, 1].min() < 50
    assert (marked == 255).all(axis=2).any() and (marked == 0).all(axis=2).any()  # white text, black edge
    assert changed[:, 1].max() < 500  # a narrow image gets smaller text, never cut at the edge


def _dciodvfy_errors(dataset: pydicom.Dataset, tmp_path: Path, name: str) -> tuple[list[str], list[str]]:
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(part10(dataset))
    run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")], [line for line in lines if line.startswith("Warning")]


@requires_dciodvfy
@pytest.mark.parametrize("source_name", ["RG1_UNCI.dcm", "CT_small.dcm", "demo"])
def test_dciodvfy_finds_no_errors(predictor, tmp_path, source_name):
    """Three kinds of source header: a real CR chest (PatientOrientation, lossy history), a CT slice (no
    PatientOrientation, other modality) and a converted PNG whose header lacks a birth date."""
    if source_name == "demo":
        row = fixture_rows()[3]
        dataset = radiograph_from_png((FIXTURES / row["fixture"]).read_bytes(),
                                      Invented("Doe^Jane", "CVZ-1", "", "", "20240301", "ACC1"))
        data, name = part10(dataset), "demo.dcm"
    else:
        data, name = open(dicom_path(source_name), "rb").read(), source_name
    _, _, results = _results(predictor, data, name)
    for kind, dataset in (("sc", results.sc), ("sr", results.sr)):
        errors, found_warnings = _dciodvfy_errors(dataset, tmp_path, kind)
        print(f"\ndciodvfy {source_name} {kind}: {len(found_warnings)} warnings", *sorted(set(found_warnings)),
              sep="\n  ")
        assert errors == [], errors


def _noise_dicom() -> bytes:
    """A DICOM radiograph whose pixels are random noise: no chest, no lungs (the header is a real one's)."""
    import cv2
    noise = np.random.default_rng(3).integers(0, 256, (600, 500), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    return part10(radiograph_from_png(png, Invented("Doe^John", "CVZ-9", "19600101", "M", "20240303", "ACC9")))


@requires_dciodvfy
def test_an_abstention_sr_carries_no_finding_only_the_reason(predictor, tmp_path):
    """Where the model gives no class (out of distribution, no plausible lungs), the SR holds no class, no
    probability finding and no heatmap class: only the flags and the reason, and dciodvfy still finds no error."""
    data = _noise_dicom()
    expected = predictor.predict_bytes(data, "noise.dcm")
    assert expected.label is None and expected.abstained
    reading, _, results = _results(predictor, data, "noise.dcm")
    report = hd.sr.ComprehensiveSR.from_dataset(results.sr)
    groups = report.content.get_image_measurement_groups()
    assert [g for g in groups if g.finding_type] == []
    (summary,) = groups
    evaluations = {q.name.value: q.value for q in summary.get_qualitative_evaluations()}
    assert PREDICTED_CLASS.value not in evaluations and HEATMAP_CLASS.value not in evaluations
    assert evaluations[OUT_OF_DISTRIBUTION.value].meaning == "Yes"
    reasons = [item.TextValue for item in hd.sr.utils.find_content_items(results.sr, name=NO_CLASS_REASON,
                                                                          recursive=True)]
    assert reasons == [expected.abstained]
    for kind, dataset in (("sc", results.sc), ("sr", results.sr)):
        errors, _ = _dciodvfy_errors(dataset, tmp_path, kind)
        assert errors == [], errors


def test_non_dicom_and_headerless_inputs_are_refused_with_a_reason():
    png = (FIXTURES / fixture_rows()[2]["fixture"]).read_bytes()
    with pytest.raises(DicomResultError, match="need a DICOM input"):
        source_header(png, "x.png")
    dataset = pydicom.dcmread(dicom_path("RG1_UNCI.dcm"))
    del dataset.StudyInstanceUID
    with pytest.raises(DicomResultError, match="lacks StudyInstanceUID"):
        source_header(part10(dataset), "x.dcm")


def test_odd_patient_names_are_not_echoed_in_warnings(predictor):
    """highdicom warns about a one-part person name by quoting it; warnings reach logs, so none may escape."""
    row = fixture_rows()[2]
    dataset = radiograph_from_png((FIXTURES / row["fixture"]).read_bytes(),
                                  Invented("Mononym", "CVZ-2", "19700101", "F", "20240302", "ACC2"))
    dataset.ReferringPhysicianName = "Housedoc"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, results = _results(predictor, part10(dataset), "odd.dcm")
        part10(results.sc), part10(results.sr)
    assert not [w for w in caught if "Mononym" in str(w.message) or "Housedoc" in str(w.message)]
    assert str(results.sr.PatientName) == "Mononym"


def test_predict_dicom_out_writes_results_for_dicom_inputs_only(tmp_path, capsys):
    from covidviz.tools.cli import main
    png = FIXTURES / fixture_rows()[2]["fixture"]
    chest = dicom_path("RG1_UNCI.dcm")
    out = tmp_path / "results"
    assert main(["predict", str(png), chest, "--dicom-out", str(out)]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 2  # one line per image, as without --dicom-out
    assert "no DICOM results" in printed.err and png.name in printed.err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["RG1_UNCI.covidviz-sc.dcm", "RG1_UNCI.covidviz-sr.dcm"]
    sr = pydicom.dcmread(out / "RG1_UNCI.covidviz-sr.dcm")
    sc = pydicom.dcmread(out / "RG1_UNCI.covidviz-sc.dcm")
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert sc.SOPInstanceUID in evidence
    label = printed.out.splitlines()[1].split("\t")[1]
    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    (summary,) = [g for g in report.content.get_image_measurement_groups() if not g.finding_type]
    predicted = {q.name.value: q.value for q in summary.get_qualitative_evaluations()}[PREDICTED_CLASS.value]
    assert predicted.value == CLASS_CODES[label].value
    assert main(["predict", chest, "--dicom-out", str(out)]) == 0  # a second run never overwrites the first
    assert len(list(out.iterdir())) == 4


# --- the Diagnose page -----------------------------------------------------------------------------------------------


@pytest.fixture
def deferred_downloads(monkeypatch):
    """The media managers AppTest creates, so a test can run a deferred download as a click would."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import app_test as app_test_module
    managers = []

    class Recording(MediaFileManager):
        def __init__(self, storage) -> None:
            super().__init__(storage)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Recording)

    def fetch(button) -> bytes:
        manager = managers[-1]
        url = manager.execute_deferred(button.proto.deferred_file_id)
        return manager._storage.get_file(url.rsplit("/", 1)[1]).content
    return fetch


@pytest.mark.slow
def test_diagnose_offers_dicom_results_for_dicom_uploads_only(deferred_downloads):
    from streamlit.testing.v1 import AppTest
    png_name = fixture_rows()[2]["fixture"]
    uploads = [(png_name, (FIXTURES / png_name).read_bytes(), "image/png"),
               ("chest.dcm", open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "application/dicom")]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.file_uploader(key="uploads").set_value(uploads).run()
    assert not at.exception, [e.value for e in at.exception]
    buttons = {b.proto.id.rsplit("-", 1)[-1]: b for b in at.get("download_button")}
    assert {"dicom_sc1", "dicom_sr1"} <= set(buttons) and not {"dicom_sc0", "dicom_sr0"} & set(buttons)
    sc = pydicom.dcmread(io.BytesIO(deferred_downloads(buttons["dicom_sc1"])))
    sr = pydicom.dcmread(io.BytesIO(deferred_downloads(buttons["dicom_sr1"])))
    source = pydicom.dcmread(dicom_path("RG1_UNCI.dcm"))
    assert sc.SOPClassUID == SC_STORAGE and sr.SOPClassUID == COMPREHENSIVE_SR
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == source.StudyInstanceUID
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert evidence == {source.SOPInstanceUID, sc.SOPInstanceUID}  # the SR names the very SC downloaded with it
    page = " ".join(e.value for kind in ("markdown", "caption", "info", "warning") for e in at.get(kind))
    assert not re.search(re.escape(str(source.PatientName)) + "|" + re.escape(source.PatientID), page)

    at.radio(key="diagnose_view").set_value("Pneumonia (not COVID)").run()  # the SC and SR follow the map on screen
    buttons = {b.proto.id.rsplit("-", 1)[-1]: b for b in at.get("download_button")}
    sr = pydicom.dcmread(io.BytesIO(deferred_downloads(buttons["dicom_sr1"])))
    (summary,) = [g for g in hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()
                  if not g.finding_type]
    shown = {q.name.value: q.value for q in summary.get_qualitative_evaluations()}[HEATMAP_CLASS.value]
    assert shown.value == CLASS_CODES["pneumonia"].value
