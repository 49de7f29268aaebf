"""The case report: everything a reader needs, nothing that identifies the patient."""

from __future__ import annotations

import io
import re

import pydicom

from covidviz import CLASS_TITLES, DISCLAIMER
from covidviz.explain.case_report import case_report_html
from covidviz.explain.overlay import gray_to_rgb
from covidviz.explain.reading import read_xray
from covidviz.io.loading import load_xray
from covidviz.model.predictor import Predictor
from tests.conftest import WEIGHTS, dicom_path


def test_report_for_a_named_dicom_has_output_and_disclaimer_but_no_identifiers():
    ds = pydicom.dcmread(dicom_path("RG1_UNCI.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Roe^Richard", "MRN-24680", "19500101"
    buf = io.BytesIO()
    ds.save_as(buf)
    predictor = Predictor(WEIGHTS)
    reading = read_xray(predictor, load_xray(buf.getvalue(), "case.dcm"), "case.dcm", None)
    verdict = reading.verdict(predictor)
    html = case_report_html(reading, gray_to_rgb(reading.canonical), "Grad-CAM: COVID-19", "covidviz", predictor.version,
                            verdict)
    assert f"Model output: <b>{CLASS_TITLES[verdict[0]]}</b>" in html  # the decision rule's class, as the page shows
    for needle in (DISCLAIMER[:40], predictor.version, "COVID-19", "Pneumonia", "Normal", "CR", "PA", "CHEST",
                   f"{reading.probabilities.max():.1%}", "data:image/png;base64,"):
        assert needle in html, needle
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 can spell anything
    for secret in ("Roe", "Richard", "MRN-24680", "19500101"):
        assert secret not in text


def test_report_carries_the_note_under_its_map():
    predictor = Predictor(WEIGHTS)
    reading = read_xray(predictor, load_xray(open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "c.dcm"), "c.dcm", None)
    html = case_report_html(reading, gray_to_rgb(reading.canonical), "Grad-CAM: COVID-19", "covidviz",
                            predictor.version, (None, "no plausible pair of lungs found"),
                            overlay_note="71% of this map's energy lies inside the lungs <b>")
    assert "71% of this map&#x27;s energy lies inside the lungs &lt;b&gt;" in html
    assert "No class given: no plausible pair of lungs found" in html and "class=top" not in html
