"""The Diagnose page under Streamlit's AppTest: real uploads, every control, numbers equal to covidviz's."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from covidviz import CLASS_TITLES, CLASSES
from covidviz.model.decision import COLOUR_REASON
from covidviz.model.predictor import Predictor
from tests.conftest import FIXTURES, ROOT, WEIGHTS, dicom_path, fixture_rows

PNG_NAME = fixture_rows()[2]["fixture"]


@pytest.fixture(scope="module")
def uploads() -> list[tuple[str, bytes, str]]:
    png = (FIXTURES / PNG_NAME).read_bytes()
    return [(PNG_NAME, png, "image/png"),
            ("chest.dcm", open(dicom_path("RG1_UNCI.dcm"), "rb").read(), "application/dicom"),
            ("corrupt.png", png[:400], "image/png")]


@pytest.fixture(scope="module")
def app(uploads) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    at.file_uploader(key="uploads").set_value(uploads)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown_outputs(at: AppTest) -> list[tuple[str, float]]:
    out = []
    for md in at.markdown:
        found = re.match(r"\*\*Model output:\*\* (.+?) \(([\d.]+)%\)", md.value)
        if found:
            out.append((found.group(1), float(found.group(2)) / 100))
    return out


def _image_titles(at: AppTest) -> list[str]:
    """Captions of the plain images (the default) and titles of the zoomable figures (on request)."""
    return [i.proto.imgs[0].caption for i in at.get("image")] + [c.proto.spec for c in at.get("plotly_chart")]


def test_numbers_on_the_page_equal_covidviz(app, uploads):
    predictor = Predictor(WEIGHTS)
    expected = [predictor.predict_bytes(data, name) for name, data, _ in uploads[:2]]
    shown = _shown_outputs(app)
    assert len(shown) == 2
    for (title, p), prediction in zip(shown, expected):
        assert title == CLASS_TITLES[prediction.label]
        assert p == pytest.approx(prediction.probabilities[prediction.label], abs=0.0005)  # the decided class's
    table = app.dataframe[0].value  # the per-upload summary
    for row, prediction in zip(table.itertuples(), expected):
        for c in CLASSES:
            assert getattr(row, f"p_{c}") == pytest.approx(prediction.probabilities[c], abs=1e-4)
    assert "truncated or corrupt" in table.iloc[2]["error"]


def test_the_corrupt_file_gets_its_message_and_the_others_still_work(app):
    errors = [e.value for e in app.error]
    assert any("corrupt.png" not in e and "truncated or corrupt" in e and "Accepted:" in e for e in errors)
    assert len(_shown_outputs(app)) == 2


def test_dicom_reader_facts_are_shown_without_identifiers(app):
    import pydicom
    tables = " ".join(m.value for m in app.markdown)
    for fact in ("CR", "PA", "CHEST", "1841 x 1955 px"):
        assert fact in tables
    ds = pydicom.dcmread(dicom_path("RG1_UNCI.dcm"))  # the upload carries a name, an ID, a birth date, a hospital
    page = tables + " ".join(e.value for kind in ("caption", "warning", "error", "info") for e in app.get(kind)) \
        + app.dataframe[0].value.to_csv()
    for secret in (str(ds.PatientName), "CompressedSamples", ds.PatientID, ds.PatientBirthDate, ds.InstitutionName):
        assert secret and secret not in page, secret


def test_probability_bars_show_every_class_without_a_chart_library(app, uploads):
    predictor = Predictor(WEIGHTS)
    bars = [m.value for m in app.markdown if 'aria-label="class probabilities"' in m.value]
    assert len(bars) == 2
    for html, (name, data, _) in zip(bars, uploads[:2]):
        expected = predictor.predict_bytes(data, name).probabilities
        assert all(f">{p:.1%}<" in html for p in expected.values())
        assert "<script" not in html


def test_the_page_says_which_engine_serves_and_why(app):
    captions = [c.value for c in app.caption if c.value.startswith("Inference engine:")]
    assert len(captions) == 1 and captions[0].startswith("Inference engine: ONNX Runtime fp32")  # as pinned by conftest
    assert "max logit difference to PyTorch" in captions[0]


def test_images_are_plain_until_zoom_is_asked_for(app):
    assert not app.get("plotly_chart")  # plotly.js never loads unless asked for
    plain = [t for t in _image_titles(app) if "p = " in t]
    app.toggle(key="zoom").set_value(True)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    charts = [c.proto.spec.encode().decode("unicode_escape") for c in app.get("plotly_chart")]
    assert len(charts) == len(plain) + 2  # every heatmap plus each upload's original
    for title in plain:
        assert any(title.split(" · ")[-1] in c for c in charts), title
    app.toggle(key="zoom").set_value(False)
    app.run()
    assert not app.get("plotly_chart")


@pytest.mark.parametrize("method", ["Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "EigenCAM", "Grad-CAM"])
def test_switching_method_keeps_the_page_working(app, method):
    app.selectbox(key="method").set_value(method)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(method in t for t in _image_titles(app))


@pytest.mark.parametrize("view", ["All three side by side", "Pneumonia (not COVID)", "Predicted class"])
def test_switching_class_view_and_style(app, view):
    app.radio(key="diagnose_view").set_value(view)
    app.radio(key="style").set_value("contour")
    app.run()
    assert not app.exception
    expected_maps = 3 if view.startswith("All") else 1
    heatmaps = [s for s in _image_titles(app) if "p = " in s]
    assert len(heatmaps) == 2 * expected_maps  # two readable uploads
    app.radio(key="style").set_value("heatmap")
    app.run()
    assert not app.exception


def test_a_photograph_is_flagged_before_its_prediction_is_read_as_meaningful():
    import io

    from PIL import Image
    from skimage.data import astronaut
    buf = io.BytesIO()
    Image.fromarray(astronaut()).save(buf, format="JPEG")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="uploads").set_value([("holiday.jpg", buf.getvalue(), "image/jpeg")])
    at.run()
    assert not at.exception
    assert any("This is a colour picture, and radiographs are grayscale" in e.value for e in at.error)
    assert any("colour image" in w.value for w in at.warning)
    # no class at all: the reason takes the verdict's place, the probabilities are greyed and said to mean nothing
    assert any(m.value.startswith(f"**Model output:** no class given: {COLOUR_REASON}") for m in at.markdown)
    assert not any(re.match(r"\*\*Model output:\*\* .+ \([\d.]+%\)", m.value) for m in at.markdown)
    assert any("not meaningful for this image" in c.value for c in at.caption)


def test_each_heatmap_states_its_energy_inside_the_lungs(app, uploads):
    """With a lung-field model, the heatmap of each upload carries its share of energy inside the lungs,
    equal to the reading's own figure; a whole-image model shows none."""
    from covidviz.explain.cam.methods import FAST_METHOD, SCALES
    from covidviz.explain.reading import heatmap, read_xray
    from covidviz.io.loading import load_xray
    predictor = Predictor(WEIGHTS)
    captions = [c.value for c in app.caption if "energy lies inside the lungs" in c.value]
    if predictor.segmenter is None:
        assert not captions
        return
    name, data, _ = uploads[0]
    reading = read_xray(predictor, load_xray(data, name), name, predictor.guard)
    shown = reading.verdict(predictor)[0]  # the page's class
    cam = heatmap(reading, predictor, FAST_METHOD, CLASSES.index(shown), SCALES[0])
    assert captions[0] == f"{reading.lung_share(cam):.0%} of this map's energy lies inside the lungs."
    assert len(captions) == 2  # the PNG and the DICOM; the corrupt file has no heatmap
    assert any("box around both lungs" in c.value for c in app.caption)


def test_maps_of_unlikely_classes_say_so(app, uploads):
    app.radio(key="diagnose_view").set_value("All three side by side")
    app.run()
    predictor = Predictor(WEIGHTS)
    expected = []
    for name, data, _ in uploads[:2]:
        prediction = predictor.predict_bytes(data, name)
        expected += [c for c in CLASSES if prediction.probabilities[c] < 0.2]
    warned = [w.value for w in app.warning if "is unlikely here" in w.value]
    assert [w.split(" is unlikely")[0] for w in warned] == [CLASS_TITLES[c] for c in expected]
    app.radio(key="diagnose_view").set_value("Predicted class")
    app.run()
