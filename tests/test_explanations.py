"""Explanation checks: the randomisation cascade tells an edge detector from Grad-CAM, ROAD prefers a map on the
evidence to its inverse, the checks run what the Diagnose page draws, and the page, the card and the method
picker show explanations.json's numbers.

The tiny model is the project's network (torchvision DenseNet, out-of-place head) at a tiny size, trained in a
few seconds to tell a round blob (class 0) from a square (class 1) and from nothing (class 2). Its evidence is
the object, so a faithful map has something to point at.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from torchvision.models.densenet import DenseNet

from covidviz import CLASS_TITLES, CLASSES
from covidviz.evaluation.explanation_check import explanation_run
from covidviz.evaluation.explanation_check.explanations import (
    explanation_lines,
    faithfulness_ranking,
    load_explanations,
    method_help,
    nested_subset,
    stratified_sample,
    verdict_stage,
    verdict_word,
)
from covidviz.evaluation.explanation_check.faithfulness import CalibratedProbability, road_scores, tie_broken_ranks
from covidviz.evaluation.explanation_check.randomisation import cascade, cascade_stages, map_similarity
from covidviz.model.network import CxrDenseNet, build_model
from covidviz.model.preprocessing import model_batch
from tests.conftest import FIXTURES, ROOT, WEIGHTS, fixture_rows

SIZE = 128


class TinyDenseNet(CxrDenseNet):
    """CxrDenseNet's forward and head, with 2 layers per block and growth 8 (4 x 4 feature map at 128 px)."""

    def __init__(self) -> None:
        DenseNet.__init__(self, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, num_classes=3)


def blob_images(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, list[tuple[float, float]]]:
    """Images in [0, 1] holding a round blob (class 0), a square (class 1) or nothing (class 2) at a random
    place on a smooth tilted background, and the object's centre: the evidence for classes 0 and 1 is the
    object, wherever it is."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, labels, centres = [], [], []
    for i in range(n):
        k = i % 3
        tilt = rng.uniform(-0.1, 0.1, 2)  # a smooth background: ROAD's imputation can restore it
        image = 0.3 + (tilt[0] * yy + tilt[1] * xx) / SIZE
        centre = (float("nan"), float("nan"))
        if k < 2:
            centre = (rng.uniform(24, 104), rng.uniform(24, 104))
            if k == 0:
                image += 0.6 * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * 7 ** 2))
            else:
                image += 0.5 * ((np.abs(yy - centre[0]) < 8) & (np.abs(xx - centre[1]) < 8))
        images.append(np.clip(image, 0, 1).astype(np.float32))
        labels.append(k)
        centres.append(centre)
    return images, np.array(labels), centres


@pytest.fixture(scope="module")
def tiny() -> CxrDenseNet:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = TinyDenseNet()
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):
        images, labels, _ = blob_images(16, rng)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(model_batch(images, SIZE))), torch.from_numpy(labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    images, labels, _ = blob_images(30, np.random.default_rng(1))
    with torch.inference_mode():
        accuracy = (model(torch.from_numpy(model_batch(images, SIZE))).argmax(1).numpy() == labels).mean()
    assert accuracy >= 0.9, f"the tiny model did not learn the blob task (accuracy {accuracy:.2f})"
    return model


def lungs_mask() -> np.ndarray:
    """Two 'lungs' on the 256 px canonical grid, one each side of the midline."""
    mask = np.zeros((256, 256), bool)
    mask[40:220, 30:110] = mask[40:220, 146:226] = True
    return mask


@pytest.fixture(scope="module")
def tiny_cases() -> list[explanation_run.Case]:
    images, labels, _ = blob_images(9, np.random.default_rng(2))
    order = np.argsort(labels, kind="stable")  # class by class, as stratified_sample orders them
    return [explanation_run.Case(name=f"blob{i}", batch=torch.from_numpy(model_batch([images[i]], SIZE)), true_class=int(labels[i]),
                    lungs=lungs_mask() if i % 2 == 0 else None) for i in order]


@pytest.fixture(scope="module")
def tiny_plan(tiny) -> explanation_run.Plan:
    methods = ["Grad-CAM", "EigenCAM", "Score-CAM"]
    return explanation_run.default_plan(tiny, methods, per_class=3, slow_per_class=1, slow_stages=2, seed=0, percentiles=(50,))


@pytest.fixture(scope="module")
def tiny_records(tiny, tiny_cases, tiny_plan) -> dict:
    return explanation_run.run_check(tiny, tiny_cases, tiny_plan)


@pytest.fixture(scope="module")
def tiny_report(tiny_records, tiny_plan, tiny_cases) -> dict:
    """explanations.json as explain-check writes it, from the tiny model's run (through JSON and back)."""
    sample = {"source": "blob images made by the test, 3 per class", "split": "synthetic", "split_size": 9,
              "files": [c.name for c in tiny_cases], "seed": 0}
    report = explanation_run.assemble_report(tiny_records, tiny_plan, tiny_cases, sample,
                                {"weights_sha256": "0" * 64, "model": "tiny", "input_size": SIZE}, 1.0)
    return json.loads(json.dumps(report, allow_nan=False))


# --- the randomisation cascade ---------------------------------------------------------------------------------------


def test_cascade_runs_from_the_head_down_and_covers_every_weight():
    model = build_model()
    stages = cascade_stages(model)
    assert [s.name for s in stages][:3] == ["head", "dense block 4", "dense block 3"]
    covered = [name for s in stages for name in s.modules]
    assert len(covered) == len(set(covered))
    params = {n for n, _ in model.named_parameters()}
    assert all(any(p.startswith(m + ".") for m in covered) for p in params)


def test_each_stage_randomises_its_layers_and_keeps_the_rest(tiny):
    stages = cascade_stages(tiny)
    models = cascade(tiny, stages, seed=0)
    trained = dict(tiny.named_parameters())
    for index, (_, model) in enumerate(models):
        done = [m for s in stages[:index + 1] for m in s.modules]
        for name, value in model.named_parameters():
            randomised = any(name.startswith(m + ".") for m in done)
            if name.endswith("bias") or "norm" in name:  # initialised to constants, may equal trained ones
                continue
            assert (not torch.equal(value, trained[name])) == randomised, (index, name)
    again = cascade(tiny, stages, seed=0)
    assert all(torch.equal(a, b) for (_, m1), (_, m2) in zip(models, again)
               for a, b in zip(m1.parameters(), m2.parameters()))


def test_similarity_is_one_for_the_same_map_and_handles_flat_maps():
    rng = np.random.default_rng(0)
    cam = rng.random((32, 32))
    assert map_similarity(cam, cam) == pytest.approx((1.0, 1.0))
    assert map_similarity(cam, 1 - cam)[0] == pytest.approx(-1.0)
    assert map_similarity(cam, np.zeros_like(cam))[0] == 0.0
    assert all(np.isnan(v) for v in map_similarity(np.zeros_like(cam), cam))


def test_randomisation_check_fails_an_edge_detector_and_passes_grad_cam(tiny_report, tiny_records):
    stages = [c["stage"] for c in tiny_report["cascade"]]
    edges = tiny_report["controls"][explanation_run.EDGES]
    assert edges["verdict"] == "fail"
    assert [s["spearman"]["mean"] for s in edges["randomisation"]] == pytest.approx([1.0] * len(stages))
    assert edges["verdict_certain"] and edges["deciding_stage"] == verdict_stage(tiny_report)
    grad_cam = tiny_report["methods"]["Grad-CAM"]
    assert grad_cam["verdict"] == "pass", grad_cam["randomisation"]
    checked = [s["spearman"]["mean"] for s in grad_cam["randomisation"][1:]]
    assert max(checked) < tiny_report["verdict_threshold"]
    assert [s["stage"] for s in grad_cam["randomisation"]] == stages
    score_cam = tiny_report["methods"]["Score-CAM"]
    assert score_cam["n_images"] == 3 and [s["stage"] for s in score_cam["randomisation"]] == stages[:2]
    assert tiny_report["sample"]["slow_methods"]["Score-CAM"]["n_images"] == 3
    # the summary is the records' mean
    rho = [r["randomisation"][1]["spearman"] for r in tiny_records["Grad-CAM"]]
    assert grad_cam["randomisation"][1]["spearman"]["mean"] == pytest.approx(np.mean(rho))


def test_run_check_resumes_from_its_progress_file(tiny, tiny_cases, tmp_path):
    calls = []

    def counted(model, batch, k):
        calls.append(k)
        return explanation_run.page_map("Grad-CAM")(model, batch, k)

    stages = cascade_stages(tiny)[:2]
    plan = explanation_run.Plan(methods={"Grad-CAM": counted}, stages=stages, per_class={"Grad-CAM": 1},
                   n_stages={"Grad-CAM": 2}, percentiles=(50,))
    progress = tmp_path / "progress.jsonl"
    first = explanation_run.run_check(tiny, tiny_cases, plan, progress_file=progress, run_key="a")
    assert len(calls) == 3 * 3 and len(progress.read_text().splitlines()) == 3
    again = explanation_run.run_check(tiny, tiny_cases, plan, progress_file=progress, run_key="a")
    assert len(calls) == 9 and again == first
    explanation_run.run_check(tiny, tiny_cases, plan, progress_file=progress, run_key="other settings")
    assert len(calls) == 18


# --- ROAD ------------------------------------------------------------------------------------------------------------


def test_road_scores_a_map_on_the_evidence_above_its_inverse(tiny):
    """On square images, removing 10% or 30% of the pixels: a map centred on the square must score higher
    than its inverse (removing the square first costs the class its probability)."""
    images, labels, centres = blob_images(9, np.random.default_rng(5))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for image, label, (cy, cx) in zip(images, labels, centres):
        if label != 1:
            continue
        evidence = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 10 ** 2)).astype(np.float32)
        batch = torch.from_numpy(model_batch([image], SIZE))
        on = road_scores(tiny, batch, evidence, 1, (70, 90))
        off = road_scores(tiny, batch, 1 - evidence, 1, (70, 90))
        assert on["combined"] > 0.1 > -0.1 > off["combined"], (on, off)
        assert on["morf"][0] < off["morf"][0] - 0.1, (on, off)


def test_road_combined_equals_the_library_and_ties_are_broken():
    from pytorch_grad_cam.metrics.road import ROADCombined

    model = TinyDenseNet().eval()
    image, _, _ = blob_images(1, np.random.default_rng(0))
    batch = torch.from_numpy(model_batch(image, SIZE))
    cam = np.zeros((SIZE, SIZE), np.float32)
    cam[40:80, 30:60] = np.linspace(0.2, 1, 30)  # 93% of the map is exactly zero
    ranks = tie_broken_ranks(cam, seed=3)
    assert len(np.unique(ranks)) == ranks.size  # every level removes exactly its share
    assert (np.diff(cam.ravel()[np.argsort(ranks.ravel())]) >= 0).all()  # and in the map's order
    ours = road_scores(model, batch, cam, 0, (10, 50, 90), seed=3)
    torch.manual_seed(3)
    library = ROADCombined([10, 50, 90])(batch, ranks[None], [CalibratedProbability(0)], model)
    assert ours["combined"] == pytest.approx(float(library[0]), abs=1e-6)
    assert ours["removed_percent"] == [90, 50, 10]


# --- what is checked is what the page shows --------------------------------------------------------------------------


def test_checked_maps_are_the_diagnose_pages_maps():
    from covidviz.explain.cam.methods import METHODS, SLOW_METHODS
    from covidviz.explain.reading import heatmap, read_xray
    from covidviz.io.loading import load_xray_file
    from covidviz.model.predictor import Predictor

    predictor = Predictor(WEIGHTS)
    reading = read_xray(predictor, load_xray_file(FIXTURES / fixture_rows()[0]["fixture"]), "x", None)
    batch = torch.from_numpy(model_batch([reading.canonical], predictor.input_size))
    for i, method in enumerate(m for m in METHODS if m not in SLOW_METHODS):
        k = i % len(CLASSES)  # every class, not every pair: each map costs a pass
        np.testing.assert_allclose(explanation_run.page_map(method)(predictor.model, batch, k),
                                   heatmap(reading, predictor, method, k), atol=1e-5, err_msg=method)


def test_stratified_sample_is_seeded_balanced_and_nested():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 3)
    rows = stratified_sample(labels, 5, seed=1)
    assert rows == stratified_sample(labels, 5, seed=1) != stratified_sample(labels, 5, seed=2)
    assert [int((labels[rows] == k).sum()) for k in range(3)] == [5, 5, 3]
    assert len(set(rows)) == len(rows)
    first = nested_subset(labels[rows], 2)
    assert [int((labels[rows][first] == k).sum()) for k in range(3)] == [2, 2, 2]
    assert first == [0, 1, 5, 6, 10, 11]


# --- the page, the card and the picker -------------------------------------------------------------------------------


@pytest.fixture
def report_weights(tiny_report, tmp_path, monkeypatch):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "explanations.json").write_text(json.dumps(tiny_report))
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(tmp_path))
    st.cache_data.clear()
    return tmp_path


def _same(shown, stored) -> bool:
    """A table cell equals the file's number exactly; an empty cell stands for null."""
    return shown == stored or (stored is None and (shown is None or np.isnan(shown)))


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "explanation_quality.py"), default_timeout=30)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_shows_the_files_numbers(report_weights, tiny_report):
    at = _page()
    report = load_explanations(report_weights)
    assert report == tiny_report
    text = " ".join(e.value for kind in ("markdown", "info", "caption") for e in at.get(kind))
    assert "Decision support" in text  # the disclaimer
    assert f"**{tiny_report['sample']['n_images']} images**" in text and tiny_report["sample"]["source"] in text
    assert "Score-CAM runs a forward pass per feature channel, so it was checked on 3 of them" in text
    passed = [m for m, s in tiny_report["methods"].items() if s["verdict"] == "pass"]
    assert f"**Pass the randomisation test:** {', '.join(passed)}." in text
    assert tiny_report["verdict_rule"] in text
    ranked = faithfulness_ranking(tiny_report)
    for method in ranked:
        assert f"{method} ({tiny_report['methods'][method]['road']['combined']['mean']:+.3f}" in text
    assert f"Score-CAM ({tiny_report['methods']['Score-CAM']['road']['combined']['mean']:+.3f}, on 3 images only)" \
        in text  # scored on a smaller sample than the others, and the page says so

    overview, cascade_shown, _, road, lungs = (d.value for d in at.dataframe)
    sections = {**tiny_report["methods"], **tiny_report["controls"]}
    assert list(overview["method"]) == list(sections)
    for row in overview.to_dict("records"):
        s = sections[row["method"]]
        deciding = next(x for x in s["randomisation"] if x["stage"] == s["deciding_stage"])
        assert row["randomisation"] == s["verdict"] + ("" if s["verdict_certain"] else " (uncertain)")
        assert row["deciding stage"] == s["deciding_stage"]
        assert row["rank corr."] == deciding["spearman"]["mean"]
        lo, hi = deciding["spearman"]["ci95"]
        assert row["rank corr. 95% CI"] == f"{lo:.2f} to {hi:.2f}"
        assert row["SSIM"] == deciding["ssim"]["mean"]
        assert row["ROAD combined"] == s["road"]["combined"]["mean"]
        lo, hi = s["road"]["combined"]["ci95"]
        assert row["ROAD 95% CI"] == f"{lo:+.3f} to {hi:+.3f}"
        assert row["s per map (median)"] == s["seconds_per_map"]["median"]
        assert row["images"] == s["n_images"]
        assert _same(row["lung energy (median)"], s["lung_energy"]["median"])

    for row in cascade_shown.to_dict("records"):
        by_stage = {x["stage"]: x["spearman"]["mean"] for x in sections[row["method"]]["randomisation"]}
        for st_name in (c["stage"] for c in tiny_report["cascade"]):
            assert _same(row[st_name], by_stage.get(st_name))
    for row in road.to_dict("records"):
        r = sections[row["method"]]["road"]
        assert [row[f"MoRF −{p}%"] for p in r["removed_percent"]] == r["morf"]
        assert [row[f"LeRF −{p}%"] for p in r["removed_percent"]] == r["lerf"]
    last = lungs.to_dict("records")[-1]
    assert last["all"] == tiny_report["lung_area_share"]["median"]
    for row in lungs.to_dict("records")[:-1]:
        energy = sections[row["method"]]["lung_energy"]
        assert _same(row["all"], energy["median"])
        assert all(_same(row[CLASS_TITLES[c]], energy["by_class"][c]) for c in CLASSES)
    figure = json.loads(at.get_by_key("cascade").proto.spec)
    lines = {d["name"]: d["y"] for d in figure["data"]}
    assert lines["Grad-CAM"] == [x["spearman"]["mean"] for x in tiny_report["methods"]["Grad-CAM"]["randomisation"]]


def test_page_without_the_file_says_the_check_has_not_been_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(tmp_path))
    at = _page()
    assert any("has not been run" in w.value and "explain-check" in w.value for w in at.warning)
    assert not at.dataframe


def test_model_card_section_and_the_pickers_help(tiny_report, report_weights):
    lines = explanation_lines(tiny_report, "0" * 64)
    text = "\n".join(lines)
    for name, section in {**tiny_report["methods"], **tiny_report["controls"]}.items():
        assert f"| {name} | {verdict_word(section)} |" in text
    assert "the model in use is" not in text
    assert ("computed for model 000000000000, but the model in use is 111111111111"
            in "\n".join(explanation_lines(tiny_report, "1" * 64)))
    assert "has not been run" in "\n".join(explanation_lines(None))
    assert "Grad-CAM passes the randomisation check" in method_help(tiny_report, "Grad-CAM")

    at = AppTest.from_file(str(ROOT / "app_pages" / "diagnose.py"), default_timeout=60)
    at.run(timeout=60)  # no model in this weights folder: the controls render, then the page says so
    help_text = at.selectbox(key="method").help
    for method in tiny_report["methods"]:
        assert method_help(tiny_report, method) in help_text


# --- the command -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_explain_check_runs_end_to_end_on_the_example_xrays(tmp_path):
    from covidviz.tools.cli import main

    out = tmp_path / "explanations.json"
    assert main(["explain-check", "--weights", str(WEIGHTS), "--data", str(tmp_path / "no-data"), "--images", "3",
                 "--methods", "Grad-CAM", "LayerCAM", "--percentiles", "50", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["sample"]["n_images"] == 3 and report["sample"]["split"] == "examples"
    assert report["sample"]["by_class"] == {c: 1 for c in CLASSES}
    assert set(report["methods"]) == {"Grad-CAM", "LayerCAM"} and explanation_run.EDGES in report["controls"]
    assert report["controls"][explanation_run.EDGES]["verdict"] == "fail"
    assert report["weights_sha256"] == json.loads((WEIGHTS / "model.json").read_text())["weights_sha256"]
    assert not (tmp_path / "explanations.progress.jsonl").exists()
    assert report["machine"]["torch_threads"] >= 1
