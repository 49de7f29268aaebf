"""The model comparison end to end on a toy collection: comparison and cross-validation runs through the real
training path, ``compare-build``, the page (every number the artifact's) and the model switch on Diagnose.
Also the paired bootstrap against a direct computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score
from streamlit.testing.v1 import AppTest

from covidviz.evaluation.artifacts import saved
from covidviz.evaluation.artifacts.evaluate import evaluate
from covidviz.evaluation.documents.facts import fmt_ci as with_ci
from covidviz.evaluation.measures.comparison import macro_f1_present, paired_difference
from covidviz.model.predictor import Predictor
from covidviz.tools.compare_build import build_comparison
from covidviz.tools.compare_runs import compare_train
from covidviz.training.config import TrainConfig
from covidviz.training.recipes import Recipe
from covidviz.training.train import train
from covidviz.ui.comparison_view import fmt
from tests.conftest import FIXTURES, ROOT, WEIGHTS, fixture_rows
from tests.toy_data import make_toy_collection

TINY = Recipe(name="test recipe", size=64, epochs=1, epoch_images=16, batch_size=8)


def test_paired_bootstrap_agrees_with_a_direct_computation():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 40)
    a = np.where(rng.random(40) < 0.8, y, rng.integers(0, 3, 40))
    b = np.where(rng.random(40) < 0.6, y, rng.integers(0, 3, 40))
    result = paired_difference(y, a, b, n_resamples=500, seed=7)

    def direct(yy, aa, bb):  # scikit-learn's macro F1 over the classes present in the truth
        labels = np.unique(yy)
        return (f1_score(yy, aa, labels=labels, average="macro", zero_division=0)
                - f1_score(yy, bb, labels=labels, average="macro", zero_division=0))

    assert result["value"] == pytest.approx(direct(y, a, b), abs=1e-12)
    draws = np.random.default_rng(7).integers(0, 40, (500, 40))  # the same images for both models on each draw
    differences = [direct(y[i], a[i], b[i]) for i in draws]
    np.testing.assert_allclose(result["ci95"], np.percentile(differences, [2.5, 97.5]), atol=1e-12)
    assert result["n"] == 40 and result["ci95"][0] < result["value"] < result["ci95"][1]
    same = paired_difference(y, a, a, n_resamples=200)
    assert same["value"] == 0 and same["ci95"] == [0.0, 0.0]
    assert macro_f1_present(np.array([0, 0, 2]), np.array([0, 1, 2])) == pytest.approx((2 / 3 + 1) / 2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A toy "shipped" DenseNet-121 on lung fields (fully evaluated), one comparison backbone, two folds."""
    toy = make_toy_collection(tmp_path_factory.mktemp("cxr"))
    base = tmp_path_factory.mktemp("comparison")
    weights = base / "weights"
    train(TrainConfig(data_dir=str(toy), run_dir=str(base / "shipped-run"), export_dir=str(weights), size=64, epochs=1,
                      batch_size=8, epoch_images=16, fast=False, segmenter_dir=str(WEIGHTS)))
    evaluate(toy, weights, n_boot=20)
    runs = base / "runs"
    compare_train(toy, runs, "small_cnn", recipe=TINY, lungs=weights, n_boot=20)
    for fold in (0, 1):
        compare_train(toy, runs, "densenet121", fold=fold, recipe=TINY, lungs=weights, n_boot=20)
    path = build_comparison(runs, weights, repeats=2, n_resamples=200)
    return weights, runs, json.loads(path.read_text()), toy


@pytest.mark.slow
def test_build_gathers_runs_and_pairs_them_with_the_shipped_model(built):
    weights, runs, report, _ = built
    assert [m["id"] for m in report["models"]] == ["shipped", "small_cnn"]
    shipped, small = report["models"]
    assert small["weights_committed"] and (weights / "comparison" / "small_cnn" / "model.safetensors").is_file()
    assert json.loads((weights / "comparison" / "small_cnn" / "eval" / "metrics.json").read_text()) == \
        json.loads((runs / "small_cnn" / "export" / "eval" / "metrics.json").read_text())
    assert report["recipe"]["name"] == "test recipe" and small["training_images_seen"] == 16
    assert shipped["macro_f1_difference"] is None
    for split in ("test", "external"):
        a, b = saved.load_predictions(weights / "comparison" / "small_cnn", split), saved.load_predictions(weights, split)
        assert list(a.files) == list(b.files)  # the backbone kept the shipped model's split: same images
        expected = macro_f1_present(a.y_true, a.probs.argmax(1)) - macro_f1_present(b.y_true, b.probs.argmax(1))
        difference = small["macro_f1_difference"][split]
        assert difference["value"] == pytest.approx(expected, abs=1e-12) and difference["n"] == a.n
        table = small["splits"][split]["macro_f1"]["value"] - shipped["splits"][split]["macro_f1"]["value"]
        assert difference["value"] == pytest.approx(table, abs=1e-9)  # the Δ column matches the table's rows
        assert small["splits"][split]["n"] == a.n
    assert small["latency_ms_batch1"] > 0 and small["throughput_img_s_batch32"] > 0


@pytest.mark.slow
def test_crossval_folds_hold_out_disjoint_patients_and_are_summarised(built):
    weights, runs, report, _ = built
    cv = report["cross_validation"]
    assert (cv["n_folds"], cv["finished"]) == (5, 2) and [f["fold"] for f in cv["folds"]] == [0, 1]
    groups = []
    for k in (0, 1):
        split = {row.split(",")[0]: row.split(",")[1] for row in
                 (runs / "cv" / f"fold-{k}" / "export" / "split.csv").read_text().splitlines()[1:]
                 if row.endswith(",test")}
        groups.append(set(split.values()))
        predictions = saved.load_predictions(weights / "comparison" / "cv" / f"fold-{k}", "test")
        assert set(predictions.files) == set(split) and cv["folds"][k]["test"]["n"] == predictions.n
        assert not (weights / "comparison" / "cv" / f"fold-{k}" / "model.safetensors").exists()
    assert not groups[0] & groups[1]
    values = [f["test"]["macro_f1"] for f in cv["folds"]]
    assert cv["summary"]["test"]["macro_f1"]["mean"] == pytest.approx(np.mean(values))
    assert cv["summary"]["test"]["macro_f1"]["std"] == pytest.approx(np.std(values, ddof=1))


@pytest.mark.slow
def test_page_shows_exactly_the_artifacts_numbers(built, monkeypatch):
    weights, _, report, _ = built
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(weights))
    at = AppTest.from_file(str(ROOT / "app_pages" / "model_comparison.py"), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for split in ("test", "external"):
        at.radio(key="comparison_split").set_value(split).run()
        table = at.dataframe[0].value
        assert list(table["model"]) == [m["title"] for m in report["models"]]
        for row, m in zip(table.itertuples(index=False), report["models"]):
            s = m["splits"][split]
            value, (low, high) = s["macro_f1"]["value"], s["macro_f1"]["ci95"]
            assert row[2] == f"{value:.3f} ({low:.3f}–{high:.3f})"
            assert table.loc[table["model"] == m["title"], "COVID-19 sensitivity"].item() == \
                with_ci(s["covid_sensitivity"])
            assert table.loc[table["model"] == m["title"], "images"].item() == s["n"]
            d = (m["macro_f1_difference"] or {}).get(split)
            shown = table.loc[table["model"] == m["title"], "Δ macro-F1 vs shipped"].item()
            assert shown == ("reference" if d is None else
                             f"{d['value']:+.3f} ({d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})")
    at.radio(key="comparison_split").set_value("test").run()
    cv_table = at.dataframe[1].value
    summary = report["cross_validation"]["summary"]["test"]["macro_f1"]
    assert cv_table["macro-F1"].iloc[-1] == f"{fmt(summary['mean'])} ± {fmt(summary['std'])}"
    assert list(cv_table["macro-F1"].iloc[:-1]) == [fmt(f["test"]["macro_f1"]) for f in report["cross_validation"]["folds"]]
    assert len(at.get("plotly_chart")) == len(report["models"]) + 1  # confusion matrices, one ROC overlay
    assert "test recipe" in at.info[0].value
    assert at.warning[0].value == "Only 2 of 5 folds have finished; the summary covers those."


def test_page_without_artifacts_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app_pages" / "model_comparison.py"), default_timeout=30)
    at.run()
    assert not at.exception and "compare-train" in at.warning[0].value and str(tmp_path) not in at.warning[0].value
    (tmp_path / "comparison").mkdir()
    (tmp_path / "comparison" / "comparison.json").write_text('{"models": []}')
    at.run()
    assert not at.exception and "holds no compared models" in at.warning[0].value


@pytest.mark.slow
def test_diagnose_switches_to_a_comparison_model(built, monkeypatch):
    weights, _, _, _ = built
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(weights))
    name = fixture_rows()[2]["fixture"]
    png = (FIXTURES / name).read_bytes()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    choice = at.selectbox(key="diagnose_model")
    assert choice.value.endswith("(shipped)") and len(choice.options) == 2
    at.file_uploader(key="uploads").set_value([(name, png, "image/png")])
    at.run()
    shipped = set(at.session_state["readings"])
    choice.set_value(choice.options[1]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("comparison model" in c.value for c in at.caption)
    expected = Predictor(weights / "comparison" / "small_cnn").predict_bytes(png, name)
    shown = [r for k, r in at.session_state["readings"].items() if expected.probabilities and k not in shipped]
    assert len(shown) == 1
    got = dict(zip(("covid", "pneumonia", "normal"), shown[0].probabilities))
    for c, p in expected.probabilities.items():
        assert got[c] == pytest.approx(p, abs=1e-4)


@pytest.mark.slow
def test_diagnose_estimates_score_cam_for_the_model_picked(monkeypatch):
    """The slow-method notice and the picker's help follow the model chosen on the page, not the configured one:
    Score-CAM on the 256 px stride-16 candidate was timed at 110 s per map, on the 128 px shipped model at 25 s."""
    from covidviz.explain.cam.methods import time_estimate
    from covidviz.verified import read_sidecar
    monkeypatch.delenv("COVIDVIZ_WEIGHTS", raising=False)
    candidate = read_sidecar(WEIGHTS / "comparison" / "densenet121_os16")
    shipped = read_sidecar(WEIGHTS)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.selectbox(key="method").set_value("Score-CAM").run()
    expected = {label: time_estimate("Score-CAM", sidecar["architecture"], int(sidecar["input_size"]))
                for label, sidecar in (("shipped", shipped), ("candidate", candidate))}
    assert expected["shipped"] != expected["candidate"]
    assert any(expected["shipped"] in i.value for i in at.info), [i.value for i in at.info]
    choice = at.selectbox(key="diagnose_model")
    choice.set_value(next(o for o in choice.options if o.startswith(candidate["name"]))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(expected["candidate"] in i.value for i in at.info), [i.value for i in at.info]
    assert expected["candidate"] in at.selectbox(key="method").help


def test_page_renders_the_committed_comparison(monkeypatch):
    monkeypatch.delenv("COVIDVIZ_WEIGHTS", raising=False)
    report = saved.load_comparison(WEIGHTS)
    at = AppTest.from_file(str(ROOT / "app_pages" / "model_comparison.py"), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert list(table["model"]) == [m["title"] for m in report["models"]]
    assert list(table["macro-F1"]) == [with_ci(m["splits"]["test"]["macro_f1"]) for m in report["models"]]
    assert all(m["title"].endswith("(reduced recipe)" if m["reduced_recipe"] else "(candidate)")
               for m in report["models"] if m["id"] != "shipped")
    committed = [m["id"] for m in report["models"] if m["weights_committed"] and m["id"] != "shipped"]
    assert all((WEIGHTS / "comparison" / c / "model.safetensors").is_file() for c in committed)
    assert all(m["weights_mb_fp16"] < report["weights_limit_mb"] for m in report["models"] if m["weights_committed"])
    cv = report["cross_validation"]
    assert cv is not None and cv["finished"] == cv["n_folds"] == 5


@pytest.mark.slow
def test_a_finished_run_is_skipped_and_an_interrupted_one_resumes(built, capsys, tmp_path):
    weights, runs, _, toy = built
    metrics = runs / "small_cnn" / "export" / "eval" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    compare_train(runs.parent / "unused", runs, "small_cnn", recipe=TINY, lungs=weights)  # data never read
    assert "already trained and evaluated" in capsys.readouterr().out and metrics.stat().st_mtime_ns == before
    two_epochs = Recipe(name="test recipe", size=64, epochs=2, epoch_images=16, batch_size=8)
    from covidviz.training.config import TrainConfig as Config
    from covidviz.training.train import train as run_training
    run_training(Config(data_dir=str(toy), run_dir=str(tmp_path / "small_cnn"), size=64, epochs=2, batch_size=8,
                        epoch_images=16, fast=False, arch="small_cnn", stop_after=1, segmenter_dir=str(weights),
                        prepared_dir=str(runs), previous_split=str(weights / "split.csv"), recipe="test recipe"))
    export = compare_train(toy, tmp_path, "small_cnn", recipe=two_epochs, lungs=weights, n_boot=20)
    out = capsys.readouterr().out
    assert "resumed from" in out and "after epoch 1" in out
    assert [h["epoch"] for h in json.loads((export / "model.json").read_text())["training"]["history"]] == [1, 2]


def test_a_comparison_built_against_other_shipped_weights_is_flagged():
    from covidviz.evaluation.artifacts.saved import COMPARISON_REBUILD, comparison_built_for, stale_warning
    report = {"models": [{"id": "small_cnn", "weights_sha256": "c" * 64}, {"id": "shipped", "weights_sha256": "a" * 64}]}
    assert stale_warning(comparison_built_for(report), "a" * 64, COMPARISON_REBUILD) is None
    warning = stale_warning(comparison_built_for(report), "b" * 64, COMPARISON_REBUILD)
    assert "model aaaaaaaaaaaa" in warning and "in use is bbbbbbbbbbbb" in warning and "compare-build" in warning
    assert stale_warning(None, "b" * 64) is None and stale_warning("a" * 64, None) is None


@pytest.mark.slow
def test_the_committed_runs_are_measured_again_against_the_shipped_model_without_run_folders(built, tmp_path):
    import shutil
    weights, _, report, _ = built
    copy = tmp_path / "weights"
    shutil.copytree(weights, copy)
    (copy / "comparison" / "small_cnn" / "model.safetensors").unlink()  # a run whose weights were not committed
    again = json.loads(build_comparison(tmp_path / "no-runs", copy, repeats=2, n_resamples=200,
                                        committed=True).read_text())
    assert [m["id"] for m in again["models"]] == [m["id"] for m in report["models"]]
    small, before = again["models"][1], report["models"][1]
    for split in ("test", "external"):
        assert small["macro_f1_difference"][split]["value"] == before["macro_f1_difference"][split]["value"]
    assert not small["weights_committed"] and small["latency_ms_batch1"] > 0
    assert small["weights_mb_fp16"] == pytest.approx(before["weights_mb_fp16"], rel=0.05)
    assert again["cross_validation"]["finished"] == report["cross_validation"]["finished"] == 2
    with pytest.raises(FileNotFoundError, match="no finished comparison run"):
        build_comparison(tmp_path / "no-runs", tmp_path / "empty", committed=True)
