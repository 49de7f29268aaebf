"""The error gallery: only licence-cleared images committed, every error live from a data folder."""

from __future__ import annotations

import csv

import pytest
from streamlit.testing.v1 import AppTest

from covidviz import CLASS_TITLES, CLASSES
from covidviz.data.collection import read_metadata
from covidviz.evaluation.artifacts.gallery import misclassified, read_gallery_index
from tests.conftest import ROOT, SHARED, WEIGHTS, requires_data

pytest_plugins = ["tests.eval_artifacts"]


def _run(monkeypatch, weights, data=None) -> AppTest:
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(weights))
    if data is None:
        monkeypatch.delenv("COVIDVIZ_DATA", raising=False)
    else:
        monkeypatch.setenv("COVIDVIZ_DATA", str(data))
    at = AppTest.from_file(str(ROOT / "pages" / "error_gallery.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _cards(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "true **" in m.value]


def test_misclassified_are_the_argmax_errors_most_confident_first(eval_weights):
    path = eval_weights / "eval" / "test_predictions.csv"
    items = misclassified(path)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    errors = [r for r in rows if max(CLASSES, key=lambda c: float(r[f"p_{c}"])) != r["true"]]
    assert len(items) == len(errors)
    assert [i.confidence for i in items] == sorted((i.confidence for i in items), reverse=True)


def test_committed_gallery_page_shows_cards_and_filters(eval_weights, monkeypatch):
    index = read_gallery_index(eval_weights)
    if not index:  # whether it should be empty is test_committed_gallery_holds_only_shippable_images_and_all_of_them's
        pytest.skip("the committed gallery is empty (no licence-cleared misclassified image): no cards to check")
    at = _run(monkeypatch, eval_weights)
    assert len(_cards(at)) == min(12, len(index)) > 0
    assert len(at.get("image")) == 2 * min(12, len(index))
    keep = index[0]["true"]
    at.multiselect(key="true_filter").set_value([keep])
    at.run()
    assert len(_cards(at)) == min(12, sum(r["true"] == keep for r in index)) > 0
    assert all(f"true **{CLASS_TITLES[keep]}**" in c for c in _cards(at))  # the filter kept only that class


@requires_data
def test_committed_gallery_holds_only_shippable_images_and_all_of_them():
    shippable = {r.file for r in read_metadata(SHARED) if r.shippable}
    index = read_gallery_index(WEIGHTS)
    assert all(row["file"] in shippable for row in index)
    expected = [i for i in misclassified(WEIGHTS / "eval" / "test_predictions.csv") if i.file in shippable]
    assert [r["file"] for r in index] == [i.file for i in expected]
    pngs = {p.name for p in (WEIGHTS / "eval" / "gallery").glob("*.png")}
    assert pngs == {r["image"] for r in index} | {r["overlay"] for r in index}


@requires_data
def test_with_a_data_folder_every_error_is_shown_live(monkeypatch):
    at = _run(monkeypatch, WEIGHTS, SHARED)
    errors = misclassified(WEIGHTS / "eval" / "test_predictions.csv")
    total = sum((SHARED / i.file).is_file() for i in errors)  # rows that left the pool are skipped
    assert total > 0
    assert f"{total} misclassified images." in [m.value for m in at.markdown]
    assert len(_cards(at)) == min(12, total)
    assert len(at.get("image")) == 2 * min(12, total)  # what the model saw, and its overlay
