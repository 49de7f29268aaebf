"""The error gallery: only licence-cleared images committed, every error live from a data folder."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from covidviz import CLASS_TITLES
from covidviz.data.collection import read_metadata
from covidviz.evaluation.artifacts.gallery import misclassified, read_gallery_index
from covidviz.model.decision import rule_from_sidecar
from covidviz.verified import read_sidecar
from tests.conftest import ROOT, SHARED, WEIGHTS, requires_data

pytest_plugins = ["tests.eval_artifacts"]


def _run(monkeypatch, weights, data=None) -> AppTest:
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(weights))
    if data is None:
        monkeypatch.delenv("COVIDVIZ_DATA", raising=False)
    else:
        monkeypatch.setenv("COVIDVIZ_DATA", str(data))
    at = AppTest.from_file(str(ROOT / "app_pages" / "error_gallery.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _cards(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "true **" in m.value]


def test_misclassified_are_the_argmax_errors_most_confident_first(tmp_path):
    """Five hand-written rows: two right, three wrong; the errors come back as written, most confident first."""
    path = tmp_path / "test_predictions.csv"
    path.write_text("file,source,true,p_covid,p_pneumonia,p_normal\n"
                    "a.png,NIH,normal,0.100000,0.200000,0.700000\n"      # right
                    "b.png,NIH,normal,0.100000,0.600000,0.300000\n"      # wrong: pneumonia at 0.6
                    "c.png,Kermany,covid,0.050000,0.050000,0.900000\n"   # wrong: normal at 0.9
                    "d.png,Kermany,pneumonia,0.300000,0.500000,0.200000\n"  # right
                    "e.png,ieee8023,pneumonia,0.450000,0.100000,0.450000\n")  # wrong: a tie goes to the first class
    items = misclassified(path)
    assert [(i.file, i.source, i.true, i.predicted, i.confidence) for i in items] == [
        ("c.png", "Kermany", "covid", "normal", 0.9),
        ("b.png", "NIH", "normal", "pneumonia", 0.6),
        ("e.png", "ieee8023", "pneumonia", "covid", 0.45),
    ]
    from covidviz.model.decision import DecisionRule
    # under a 0.25 COVID-19 threshold d.png (p_covid 0.3, pneumonia 0.5) is called COVID-19: a new error
    screened = misclassified(path, DecisionRule(covid_threshold=0.25))
    assert ("d.png", "covid") in [(i.file, i.predicted) for i in screened] and len(screened) == 4
    assert items[0].probabilities == {"covid": 0.05, "pneumonia": 0.05, "normal": 0.9}


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
    rule = rule_from_sidecar(read_sidecar(WEIGHTS))  # the errors of the class the product shows
    expected = [i for i in misclassified(WEIGHTS / "eval" / "test_predictions.csv", rule) if i.file in shippable]
    assert [r["file"] for r in index] == [i.file for i in expected]
    pngs = {p.name for p in (WEIGHTS / "eval" / "gallery").glob("*.png")}
    assert pngs == {r["image"] for r in index} | {r["overlay"] for r in index}


@requires_data
def test_with_a_data_folder_every_error_is_shown_live(monkeypatch):
    at = _run(monkeypatch, WEIGHTS, SHARED)
    errors = misclassified(WEIGHTS / "eval" / "test_predictions.csv", rule_from_sidecar(read_sidecar(WEIGHTS)))
    total = sum((SHARED / i.file).is_file() for i in errors)  # rows that left the pool are skipped
    assert total > 0
    assert f"{total} misclassified images." in [m.value for m in at.markdown]
    assert len(_cards(at)) == min(12, total)
    assert len(at.get("image")) == 2 * min(12, total)  # what the model saw, and its overlay


@requires_data
def test_fit_decision_with_data_rebuilds_the_gallery_under_the_rule_it_fitted(tmp_path):
    """From a copy of the weights whose sidecar has no rule (argmax): ``fit-decision --data`` fits the threshold
    and draws the gallery from that rule's errors, not argmax's: a film the threshold alone gets wrong is in it,
    a film argmax alone gets wrong is not, a non-shippable error never is, and every listed picture exists."""
    import csv
    import json
    import shutil

    from covidviz.tools.cli import main
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("model.json", "model.safetensors", "ood.json", "ood.safetensors", "split.csv"):
        shutil.copy(WEIGHTS / name, weights / name)
    shutil.copytree(WEIGHTS / "lungs", weights / "lungs")
    (weights / "eval").mkdir()
    for name in ("val_predictions.csv", "test_predictions.csv", "external_predictions.csv"):
        shutil.copy(WEIGHTS / "eval" / name, weights / "eval" / name)
    sidecar = json.loads((weights / "model.json").read_text())
    shipped_rule = rule_from_sidecar(sidecar)
    sidecar.pop("decision")
    (weights / "model.json").write_text(json.dumps(sidecar))

    under_rule = {i.file for i in misclassified(WEIGHTS / "eval" / "test_predictions.csv", shipped_rule)}
    under_argmax = {i.file for i in misclassified(WEIGHTS / "eval" / "test_predictions.csv")}
    rule_only, argmax_only, both, hidden = (sorted(films)[0] for films in (
        under_rule - under_argmax, under_argmax - under_rule, under_rule & under_argmax,
        (under_rule & under_argmax) - {sorted(under_rule & under_argmax)[0]}))
    chosen = [rule_only, argmax_only, both, hidden]
    data = tmp_path / "cxr"
    data.mkdir()
    with (SHARED / "metadata.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        kept = [{**row, "demo_shippable": "no" if row["file"] == hidden else "yes"}  # a gallery of this folder
                for row in reader if row["file"] in chosen]
        fields = reader.fieldnames
    with (data / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(kept)
    for name in chosen:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).symlink_to(SHARED / name)

    assert main(["fit-decision", "--weights", str(weights), "--data", str(data), "--bootstrap", "20"]) == 0
    fitted = rule_from_sidecar(read_sidecar(weights))
    assert fitted == shipped_rule  # the same validation predictions give the same threshold
    index = read_gallery_index(weights)
    assert sorted(r["file"] for r in index) == sorted([rule_only, both])
    assert all((weights / "eval" / "gallery" / r[key]).is_file() for r in index for key in ("image", "overlay"))
