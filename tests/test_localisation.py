"""Localisation against the radiologists' boxes: the box geometry (carried into the lung-field crop the model
reads), the pointing game and box energy on constructed maps with known answers, the summary, the shipped
``localisation.json`` recomputed with the real model on real films, and the Explanation quality page."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from covidviz.evaluation.explanation_check.localisation import (
    Box,
    box_in_crop,
    box_mask,
    even_lung_share,
    film_measures,
    peak_in_mask,
    read_boxes,
    summarise_group,
    summarise_localisation,
)
from covidviz.evaluation.explanation_check.localisation_report import (
    load_localisation,
    localisation_lines,
    localisation_path,
)
from covidviz.evaluation.explanation_check.localisation_run import (
    film_maps,
    film_row,
    read_splits,
    slow_subset,
)
from covidviz.explain.cam.methods import MAPS_REVISION, SLOW_METHODS, changed_since, revision_warning
from covidviz.model.preprocessing import CANONICAL_SIZE, CropBox, lung_field_image, mask_in_box
from tests.conftest import ROOT, SHARED, WEIGHTS, requires_data

# --- geometry -------------------------------------------------------------------------------------------------------


def test_a_box_is_carried_into_a_known_crop():
    # the crop: rows 20..148, columns 40..200 of the original, resized to 256 x 256 (x by 1.6, y by 2)
    crop = CropBox(top=20.0, left=40.0, height=128.0, width=160.0)
    assert box_in_crop(Box(60, 52, 32, 64), crop) == Box(32.0, 64.0, 51.2, 128.0)
    assert box_in_crop(Box(40, 20, 160, 128), crop) == Box(0.0, 0.0, 256.0, 256.0)  # the crop itself fills the frame
    # half of this box lies left of the crop: that half falls outside the frame and the mask clips it
    outside = box_in_crop(Box(20, 20, 40, 128), crop)
    assert outside.x == -32.0 and outside.x + outside.width == 32.0
    mask = box_mask([Box(20, 20, 40, 128)], crop)
    assert mask[:, :32].all() and not mask[:, 32:].any()


def test_box_mask_takes_pixel_centres_and_unites_boxes():
    identity = CropBox(0.0, 0.0, 256.0, 256.0)
    mask = box_mask([Box(10, 20, 5, 7)], identity)
    assert mask.sum() == 35 and mask[20:27, 10:15].all()
    assert box_mask([Box(10.4, 20, 0.2, 7)], identity).sum() == 7  # covers the centre 10.5 of column 10
    assert box_mask([Box(10.6, 20, 0.3, 7)], identity).sum() == 0  # covers no pixel centre
    two = box_mask([Box(0, 0, 10, 10), Box(5, 5, 10, 10)], identity)
    assert two.sum() == 100 + 100 - 25


def test_box_mask_agrees_with_the_preprocessings_own_resampling():
    """The lung mask reaches the crop's frame through ``mask_in_box``; a box drawn on the original grid and sent
    the same way must land where :func:`box_mask` puts it (to a pixel at its edges)."""
    crop = CropBox(top=30.0, left=18.0, height=200.0, width=170.0)
    original = np.zeros((256, 256), np.float32)
    original[90:150, 40:100] = 1  # Box(40, 90, 60, 60)
    resampled = mask_in_box(original, (256, 256), crop)
    ours = box_mask([Box(40, 90, 60, 60)], crop)
    assert (resampled ^ ours).sum() <= 2 * (ours.any(axis=0).sum() + ours.any(axis=1).sum())  # edge pixels only
    assert (resampled & ours).sum() / (resampled | ours).sum() > 0.95


def test_a_marked_region_of_a_real_film_lands_in_its_box_after_the_lung_field_crop(xray_gray):
    """End to end through the real preprocessing: paint a box white on a real film, crop its lung field with a
    known lung outline, and find the white region inside the box's mask on the image the model reads."""
    gray = xray_gray.astype(np.float32) / 255
    box = Box(x=70, y=100, width=40, height=30)
    gray[100:130, 70:110] = 1.0
    lungs = np.zeros((256, 256), np.float32)
    lungs[60:210, 30:115] = 1   # right lung (image left)
    lungs[60:220, 140:230] = 1  # left lung
    prepared = lung_field_image(gray, lungs)
    assert prepared.lung_field and not prepared.box.covers((256, 256))  # a real crop, not the whole image
    mask = box_mask([box], prepared.box, CANONICAL_SIZE)
    white = prepared.image >= 0.999
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    assert white[inner].all()  # the painted region fills the box's mask
    assert mask.sum() == pytest.approx(30 * 40 * (256 / prepared.box.height) * (256 / prepared.box.width), rel=0.1)


# --- the measures on constructed maps -------------------------------------------------------------------------------


def test_pointing_game_reads_the_peak_on_the_masks_grid():
    mask = np.zeros((256, 256), bool)
    mask[:128, 128:] = True  # the top-right quadrant
    cam = np.zeros((4, 4), np.float32)
    cam[0, 3] = 1  # a 4 x 4 map peaking in its top-right cell
    assert peak_in_mask(cam, mask) is True
    assert peak_in_mask(cam[:, ::-1], mask) is False
    assert peak_in_mask(np.full((4, 4), 0.5, np.float32), mask) is None  # a flat map points nowhere


def test_box_energy_and_the_even_lung_baseline_have_known_values():
    boxes = np.zeros((256, 256), bool)
    boxes[:64, :] = True  # a quarter of the frame
    assert film_measures(np.ones((8, 8), np.float32), boxes)["box_energy"] == pytest.approx(0.25)
    assert film_measures(np.zeros((8, 8), np.float32), boxes) == {"peak_in_box": None, "box_energy": None}
    inside = np.zeros((4, 4), np.float32)
    inside[0, :] = 1
    assert film_measures(inside, boxes)["peak_in_box"] is True
    lungs = np.zeros((256, 256), bool)
    lungs[:, :128] = True  # half the frame; the boxes cover a quarter of it
    assert even_lung_share(lungs, boxes) == pytest.approx(0.25)
    assert even_lung_share(boxes, boxes) == pytest.approx(1.0)


def test_group_summary_leaves_undefined_films_out_and_pairs_the_difference():
    s = summarise_group([True, False, None, True], [0.1, 0.3, 0.5, 0.2], [0.2, 0.2, 0.2, None], n_boot=200)
    assert s["n_films"] == 4 and s["n_pointing"] == 3 and s["n_pointed_inside"] == 2
    assert s["pointing"]["value"] == pytest.approx(2 / 3)
    assert s["box_energy_median"]["value"] == pytest.approx(0.25)
    assert s["even_lung_median"]["value"] == pytest.approx(0.2)
    assert s["difference_median"]["value"] == pytest.approx(0.1)  # films 1-3 paired: -0.1, +0.1, +0.3
    assert s["above_even_share"]["value"] == pytest.approx(2 / 3)
    for key in ("pointing", "box_energy_median", "even_lung_median"):
        lo, hi = s[key]["ci95"]
        assert lo <= s[key]["value"] <= hi
    empty = summarise_group([], [], [])
    assert empty["n_films"] == 0 and empty["pointing"] == {"value": None, "ci95": [None, None]}


def test_slow_subset_is_seeded_and_half_trained_on():
    splits = {f"f{i}": ("train" if i < 10 else "test") for i in range(16)}
    chosen = slow_subset(list(splits), splits, 6, seed=0)
    assert chosen == slow_subset(list(splits), splits, 6, seed=0) and len(set(chosen)) == 6
    assert sum(splits[f] == "train" for f in chosen) == 3


# --- the shipped artifact ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> dict:
    if not localisation_path(WEIGHTS).is_file():
        pytest.skip("weights/eval/localisation.json is not shipped")
    return load_localisation(WEIGHTS)


def test_shipped_summary_is_what_its_per_film_rows_give(shipped):
    assert summarise_localisation(shipped["films"], list(shipped["methods"]), shipped["n_boot"]) == shipped["methods"]
    splits = read_splits(WEIGHTS / "split.csv")
    assert all(f["split"] == splits[f["file"]] for f in shipped["films"])
    for method, groups in shipped["methods"].items():
        assert groups["all"]["n_films"] == groups["trained"]["n_films"] + groups["unseen"]["n_films"]
        if method not in SLOW_METHODS:
            assert groups["all"]["n_films"] == shipped["boxes"]["n_films"]


@requires_data
def test_real_model_recomputes_the_shipped_rows(shipped, predictor):
    """Three films (two trained on, one never seen) through the real preprocessing and every fast method, on the
    real model: the same pointing game and box energy as the artifact's rows."""
    from covidviz.io.loading import load_xray_file
    boxes = read_boxes(SHARED / "boxes.csv")
    assert shipped["boxes"]["n_boxes"] == sum(len(b) for b in boxes.values())
    films = [f for f in shipped["films"] if f["split"] == "train"][:2] + \
        [f for f in shipped["films"] if f["split"] != "train"][:1]
    methods = [m for m in shipped["methods"] if m not in SLOW_METHODS]
    for stored in films:
        prepared = predictor.prepare([load_xray_file(SHARED / stored["file"]).pixels])[0]
        row = film_row(stored["file"], stored["split"], prepared, boxes[stored["file"]])
        assert {k: v for k, v in stored.items() if k not in ("maps", "even_lung")} == \
            {k: v for k, v in row.items() if k != "even_lung"}
        assert row["even_lung"] == pytest.approx(stored["even_lung"], abs=1e-9)
        maps = film_maps(predictor.model.float().eval(), prepared, boxes[stored["file"]], methods,
                         predictor.input_size)
        for method in methods:
            assert maps[method]["peak_in_box"] == stored["maps"][method]["peak_in_box"], (stored["file"], method)
            assert maps[method]["box_energy"] == pytest.approx(stored["maps"][method]["box_energy"], abs=1e-4)


def test_model_card_section_shows_the_artifacts_rows(shipped):
    text = "\n".join(localisation_lines(shipped, shipped["weights_sha256"]))
    for method, groups in shipped["methods"].items():
        g = groups["unseen"]
        assert f"| {method} | never seen: {g['n_films']} | {g['pointing']['value']:.0%} (" in text
    assert "computed for model" in "\n".join(localisation_lines(shipped, "f" * 64))
    assert "has not been run" in "\n".join(localisation_lines(None))


# --- the page ----------------------------------------------------------------------------------------------------------


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "explanation_quality.py"), default_timeout=30)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_shows_the_localisation_files_numbers(shipped, monkeypatch):
    from covidviz.evaluation.explanation_check.localisation_report import fmt_value
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(WEIGHTS))
    st.cache_data.clear()
    at = _page()
    table = at.dataframe[-1].value  # the page's last table
    rows = table.to_dict("records")
    assert len(rows) == 3 * len(shipped["methods"])
    words = {"trained on": "trained", "never seen": "unseen", "all": "all"}
    for row in rows:
        g = shipped["methods"][row["method"]][words[row["films"]]]
        assert row["n"] == g["n_films"]
        assert row["peak inside a box"] == g["pointing"]["value"]
        assert row["energy inside boxes"] == g["box_energy_median"]["value"]
        assert row["even lung map"] == g["even_lung_median"]["value"]
        assert row["difference"] == g["difference_median"]["value"]
        lo, hi = g["pointing"]["ci95"]
        assert row["peak inside a box 95% CI"] == f"{lo:.2f} to {hi:.2f}"
    text = " ".join(e.value for e in at.markdown)
    unseen = shipped["methods"]["Grad-CAM"]["unseen"]
    assert f"on {fmt_value(unseen['pointing'])} of films" in text
    assert f"where the even lung map puts {fmt_value(unseen['even_lung_median'])}" in text


def test_page_without_localisation_says_it_has_not_been_run(tmp_path, monkeypatch):
    (tmp_path / "eval").mkdir()
    shutil.copy(WEIGHTS / "eval" / "explanations.json", tmp_path / "eval" / "explanations.json")
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(tmp_path))
    st.cache_data.clear()
    at = _page()
    assert any("localisation check has not been run" in c.value for c in at.caption)
    assert "peak inside a box" not in at.dataframe[-1].value.columns  # the lung table is the last one
    assert json.loads((tmp_path / "eval" / "explanations.json").read_text())["methods"]


@requires_data
def test_explain_check_localisation_part_writes_beside_out(shipped, tmp_path):
    """The command, on one film and the page's default method: the artifact lands beside ``--out`` (never over the
    shipped one) and its row is the shipped row for that film."""
    from covidviz.tools.cli import main
    assert main(["explain-check", "--part", "localisation", "--weights", str(WEIGHTS), "--data", str(SHARED),
                 "--films", "1", "--methods", "Grad-CAM", "--out", str(tmp_path / "explanations.json")]) == 0
    report = json.loads((tmp_path / "localisation.json").read_text())
    (film,) = report["films"]
    assert film["split"] in ("val", "test")  # never-seen films come first
    stored = next(f for f in shipped["films"] if f["file"] == film["file"])
    assert film["maps"]["Grad-CAM"]["peak_in_box"] == stored["maps"]["Grad-CAM"]["peak_in_box"]
    assert film["maps"]["Grad-CAM"]["box_energy"] == pytest.approx(stored["maps"]["Grad-CAM"]["box_energy"], abs=1e-4)
    assert report["weights_sha256"] == shipped["weights_sha256"] and not (tmp_path / "explanations.json").exists()


@requires_data
def test_explain_check_localisation_of_a_model_without_its_own_split(tmp_path, capsys):
    """A comparison model keeps no split file of its own: the command says so and how to give one, instead of a
    traceback; given the shipped split it shares, it scores the candidate as its stored check did."""
    from covidviz.tools.cli import main
    candidate = WEIGHTS / "comparison" / "densenet121_os16"
    if not (candidate / "model.safetensors").is_file():
        pytest.skip("the stride-16 candidate's weights are not committed")
    args = ["explain-check", "--part", "localisation", "--weights", str(candidate), "--data", str(SHARED),
            "--films", "1", "--methods", "Grad-CAM", "--out", str(tmp_path / "explanations.json")]
    assert main(args) == 2
    assert f"no split file {candidate / 'split.csv'}" in capsys.readouterr().err
    assert main([*args, "--split", str(WEIGHTS / "split.csv")]) == 0
    (film,) = json.loads((tmp_path / "localisation.json").read_text())["films"]
    stored = next(f for f in load_localisation(candidate)["films"] if f["file"] == film["file"])
    assert film["split"] == stored["split"] in ("val", "test")
    assert film["maps"]["Grad-CAM"]["peak_in_box"] == stored["maps"]["Grad-CAM"]["peak_in_box"]
    assert film["maps"]["Grad-CAM"]["box_energy"] == pytest.approx(stored["maps"]["Grad-CAM"]["box_energy"], abs=1e-4)


def test_shipped_heatmap_checks_are_at_the_current_maps_revision(shipped):
    explanations = json.loads((WEIGHTS / "eval" / "explanations.json").read_text())
    assert shipped["maps_revision"] == explanations["maps_revision"] == MAPS_REVISION
    assert revision_warning(shipped, "run it") is None


def test_a_check_made_before_a_maps_change_names_the_methods_it_no_longer_describes():
    assert changed_since(MAPS_REVISION) == []
    assert changed_since(1) == ["Grad-CAM++", "XGrad-CAM"]
    warning = revision_warning({}, "run `python -m covidviz explain-check` to write it")  # no revision: 1
    assert "Grad-CAM++ and XGrad-CAM" in warning and "their rows describe" in warning
    assert warning.endswith("Run `python -m covidviz explain-check` to write it again.")


def test_page_warns_over_checks_made_before_the_maps_changed(shipped, tmp_path, monkeypatch):
    (tmp_path / "eval").mkdir()
    for name in ("explanations.json", "localisation.json"):
        report = json.loads((WEIGHTS / "eval" / name).read_text())
        report.pop("maps_revision", None)
        (tmp_path / "eval" / name).write_text(json.dumps(report))
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(tmp_path))
    st.cache_data.clear()
    warnings = [w.value for w in _page().warning if "no longer draws" in w.value]
    assert len(warnings) == 2 and all("Grad-CAM++ and XGrad-CAM" in w for w in warnings)
    assert "--part localisation" in warnings[1] and "--part" not in warnings[0]


def test_model_card_warns_over_checks_made_before_the_maps_changed(shipped):
    from covidviz.evaluation.explanation_check.explanations import explanation_lines
    explanations = json.loads((WEIGHTS / "eval" / "explanations.json").read_text())
    for lines, report in ((localisation_lines, shipped), (explanation_lines, explanations)):
        current = "\n".join(lines(report, report["weights_sha256"]))
        older = "\n".join(lines({k: v for k, v in report.items() if k != "maps_revision"}, report["weights_sha256"]))
        assert "no longer draws" not in current
        assert "**These results were computed before the maps of Grad-CAM++ and XGrad-CAM changed" in older
