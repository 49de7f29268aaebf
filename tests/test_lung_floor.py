"""The lung confidence floor and the flat-lung limit on the shipped model: a grayscale photograph and a drawing get
no class, real films keep theirs, and the recorded report is what the real model and segmenter do."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from covidviz.data.documents import rendered_documents
from covidviz.data.ood_sets import documents_and_screens, grayscale_pictures
from covidviz.evaluation.artifacts.lung_floor import load_lung_floor, summary_lines
from covidviz.lungs.segmenter import load_segmenter
from covidviz.model.decision import NO_LUNGS_REASON
from covidviz.model.ood import load_guard
from tests.conftest import FIXTURES, ROOT, SHARED, WEIGHTS, fixture_rows, requires_data


@pytest.fixture(scope="module")
def report():
    report = load_lung_floor(WEIGHTS)
    assert report is not None, "weights/eval/lung_floor.json is missing: run python -m covidviz fit-lung-floor"
    return report


def test_the_report_is_the_shipped_segmenters_floor_and_the_card_carries_it(report):
    segmenter = load_segmenter(WEIGHTS, network=False)
    assert segmenter.min_confidence == pytest.approx(report["min_confidence"])
    assert report["segmenter_sha256"] == segmenter.sha256
    assert segmenter.max_flat == pytest.approx(report["max_flat"])
    assert report["real"]["val"]["below_floor"] == 0  # the rule: no validation film refused
    assert report["real"]["val"]["above_flat_limit"] == 0
    assert report["real"]["val"]["flattest"][0] <= report["max_flat"] < report["real"]["val"]["flattest"][0] + 0.001
    assert "\n".join(summary_lines(report)) in (WEIGHTS / "MODEL_CARD.md").read_text()


def test_the_held_out_grayscale_pictures_fare_as_the_report_says(predictor, report):
    """Recomputed with the real model: which pictures get a class, and which the floor alone stops (their
    geometry passed, so the reason is the segmenter's hesitation). Some must be stopped by it, or it is idle."""
    _recompute(predictor, grayscale_pictures(), report["non_chest"]["grayscale pictures"])
    assert report["non_chest"]["grayscale pictures"]["caught_by_floor"]


def test_the_held_out_documents_and_screens_fare_as_the_report_says(predictor, report):
    """Pages, forms, screens and charts rendered here, with their centres and negatives: what the report says of
    them is what the real model does with them now."""
    documents = documents_and_screens()
    assert len(documents) == 3 * len(rendered_documents())  # each one, its centre and its negative: none refused
    _recompute(predictor, documents, report["non_chest"]["documents and screens"])


def test_the_histograms_negative_is_stopped_by_the_lung_check_itself(predictor, report):
    """Its blanks on either side of the bell curve are drawn as a confident, lung-shaped pair: geometry and the
    confidence floor pass them; the flat-lung limit does not. Before it, only the OOD distance stopped it."""
    name = "doc:histogram negative"
    xray = documents_and_screens()[name]
    one = predictor.prepare([xray.pixels])[0]
    assert one.check.paired and one.check.confidence >= report["min_confidence"]
    assert one.check.flat > 2 * report["max_flat"] and not one.lungs_plausible
    prediction = predictor.predict_xrays([xray], [name])[0]
    assert prediction.label is None and prediction.lungs_plausible is False
    assert any("of the lungs the segmenter marked is flat" in w for w in prediction.warnings)
    assert name in report["non_chest"]["documents and screens"]["stopped_only_for_flat_lungs"]


def test_the_rendered_documents_are_the_same_on_every_run():
    first, again = rendered_documents(), rendered_documents()
    assert list(first) == list(again) and all(np.array_equal(first[k], again[k]) for k in first)
    assert all(a.dtype == np.uint8 and a.ndim == 2 and min(a.shape) >= 400 and a.std() > 10 for a in first.values())


def _recompute(predictor, pictures, recorded):
    """The report's counts and names for one set equal what the real model gives it now."""
    assert recorded["n"] == len(pictures)
    names = sorted(pictures)
    predictions = predictor.predict_xrays([pictures[n] for n in names], names)
    assert [p.name for p in predictions if p.label is not None] == recorded["still_given_a_class"]
    hesitant = [p.name for p in predictions if any("was unsure of the lungs it marked" in w for w in p.warnings)]
    assert set(recorded["caught_by_floor"]) <= set(hesitant)
    assert recorded["given_a_class_without_floor"] - recorded["given_a_class"] == len(recorded["caught_by_floor"])
    prepared = predictor.prepare([pictures[n].pixels for n in names])
    flat = [n for n, one in zip(names, prepared) if one.check is not None and one.check.paired
            and one.check.flat > predictor.segmenter.max_flat]
    alone = [n for n in flat if any("of the lungs the segmenter marked is flat" in w
                                    for w in predictions[names.index(n)].warnings)]
    assert (len(flat), alone) == (recorded["flat_lungs"], recorded["stopped_only_for_flat_lungs"])
    far = {p.name for p in predictions if p.ood_distance > predictor.guard.threshold}
    no_lungs = {p.name for p in predictions if p.lungs_plausible is False}
    assert (len(far), len(no_lungs), len(far & no_lungs)) == (
        recorded["beyond_ood_threshold"], recorded["no_plausible_lungs"], recorded["both"])


def test_predict_json_gives_no_class_to_a_grayscale_photograph_the_distance_lets_through(report, tmp_path):
    """The real CLI on scikit-image's cat in gray: its features lie within the OOD threshold and geometry finds
    two 'lungs', so before the floor it was called a class. A real film beside it keeps its class."""
    import skimage.data
    cat = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).convert("L").save(cat)
    film = FIXTURES / fixture_rows()[0]["fixture"]
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", "--json", "--engine", "torch", str(cat),
                             str(film)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    photo, xray = (json.loads(line) for line in result.stdout.splitlines())
    assert photo["label"] is None and photo["abstained"] == NO_LUNGS_REASON and photo["lungs_plausible"] is False
    assert photo["ood_distance"] <= load_guard(WEIGHTS).threshold  # the distance alone would have let it through
    assert any("was unsure of the lungs it marked" in w for w in photo["warnings"])
    assert "gray:cat" in report["non_chest"]["grayscale pictures"]["caught_by_floor"]  # chelsea is cat
    assert xray["label"] is not None and xray["lungs_plausible"] is True


def test_every_real_chest_fixture_clears_the_floor(predictor, report):
    """The pool's and the external sets' fixture films: none refused for hesitation or for flat lungs."""
    from covidviz.io.loading import load_xray
    rows = fixture_rows()
    xrays = [load_xray((FIXTURES / r["fixture"]).read_bytes(), r["fixture"]) for r in rows]
    prepared = predictor.prepare([x.pixels for x in xrays])
    confidences = np.array([p.check.confidence for p in prepared if p.lungs_found])
    assert len(confidences) >= len(rows) - 1 and (confidences >= report["min_confidence"]).all()
    assert all(p.check.flat <= report["max_flat"] for p in prepared if p.lungs_found)


@requires_data
def test_fit_lung_floor_sets_the_floor_at_the_least_validation_confidence_and_it_stops_the_cat(tmp_path):
    """The real command on a copy of the weights whose segmenter has no floor and whose split holds six validation
    films, two test and two external films from the pool: the floor it records is the least confidence the real
    segmenter gives those validation films; before it the grayscale cat gets a class, after it none."""
    import csv
    import shutil

    import skimage.data

    from covidviz.io.loading import load_xray, load_xray_file
    from covidviz.lungs.field import flat_limit
    from covidviz.lungs.segmenter import PLAUSIBILITY_KEY
    from covidviz.model.predictor import Predictor
    from covidviz.model.preprocessing import prepare
    from covidviz.tools.cli import main
    from covidviz.verified import read_sidecar
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("model.json", "model.safetensors", "ood.json", "ood.safetensors"):
        shutil.copy(WEIGHTS / name, weights / name)
    shutil.copytree(WEIGHTS / "lungs", weights / "lungs")
    lungs_sidecar = json.loads((weights / "lungs" / "model.json").read_text())
    lungs_sidecar.pop(PLAUSIBILITY_KEY)
    (weights / "lungs" / "model.json").write_text(json.dumps(lungs_sidecar))
    with (WEIGHTS / "split.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [r for r in rows if r["split"] == "val"][:6] + [r for r in rows if r["split"] == "test"][:2]
    with (weights / "split.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    files = {r["file"] for r in chosen}
    data = tmp_path / "cxr"
    data.mkdir()
    with (SHARED / "metadata.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        metadata = list(reader)
    external = [row["file"] for row in metadata if row["set"] == "external"][:2]
    kept = [row for row in metadata if row["file"] in files or row["file"] in external]
    with (data / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, reader.fieldnames)
        writer.writeheader()
        writer.writerows(kept)
    for row in kept:
        (data / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        (data / row["file"]).symlink_to(SHARED / row["file"])

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).convert("L").save(buffer, format="PNG")
    photo = load_xray(buffer.getvalue(), "cat.png")
    assert Predictor(weights, engine="torch").predict_xrays([photo], ["cat"])[0].label is not None

    assert main(["fit-lung-floor", "--weights", str(weights), "--data", str(data)]) == 0
    segmenter = load_segmenter(weights)
    validation = [r["file"] for r in chosen if r["split"] == "val"]
    fields = prepare([load_xray_file(SHARED / f).pixels for f in validation], segmenter)
    expected = np.floor(1000 * min(p.check.confidence for p in fields if p.lungs_found)) / 1000
    floor = read_sidecar(weights / "lungs")[PLAUSIBILITY_KEY]["min_confidence"]
    assert floor == pytest.approx(expected) and segmenter.min_confidence == pytest.approx(expected)
    assert segmenter.max_flat == pytest.approx(flat_limit(np.array([p.check.flat for p in fields if p.lungs_found])))
    recorded = load_lung_floor(weights)
    assert recorded["real"]["val"] == {**recorded["real"]["val"], "n": 6, "below_floor": 0}
    assert recorded["real"]["test"]["n"] == 2 and recorded["real"]["external"]["n"] == 2
    assert Predictor(weights, engine="torch").predict_xrays([photo], ["cat"])[0].label is None
