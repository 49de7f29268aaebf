"""The evaluation pages under Streamlit's AppTest, on the artifacts in ``COVIDVIZ_WEIGHTS`` (default: the
real ``weights/``, or a provisional toy set while those do not exist yet). Every number a page shows is
compared with what the covidviz functions compute from the same files."""

from __future__ import annotations

import io
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from sklearn import metrics as skm
from streamlit.testing.v1 import AppTest

from covidviz import CLASSES
from covidviz.evaluation.artifacts import saved
from covidviz.evaluation.documents.facts import lung_energy_table
from covidviz.evaluation.measures import operating_point
from covidviz.model.decision import rule_from_sidecar
from covidviz.ui import eval_figures
from covidviz.verified import read_sidecar
from tests.conftest import ROOT

pytest_plugins = ["tests.eval_artifacts"]

METRIC_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1")


@pytest.fixture
def weights(eval_weights, monkeypatch):
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(eval_weights))
    st.cache_data.clear()
    return eval_weights


def run_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / page), default_timeout=30)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest, kind: str | None = None, key: str | None = None, value=None) -> AppTest:
    """Run again, after setting the widget ``kind`` with ``key`` to ``value`` when given."""
    if kind:
        getattr(at, kind)(key=key).set_value(value)
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    return at


def figure(at: AppTest, key: str) -> dict:
    """The plotly figure a page drew under ``key``, checked to offer the PNG download in its modebar."""
    chart = at.get_by_key(key)
    assert json.loads(chart.proto.config)["toImageButtonOptions"]["format"] == "png"
    return json.loads(chart.proto.spec)


def shown(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def shown_metrics(at: AppTest) -> list[str]:
    return [m.value for m in at.metric]


def expected_metrics(point: operating_point.OperatingPoint, prevalence: float, positives: int, negatives: int) -> list[str]:
    ppv, npv = operating_point.adjusted_predictive_values(point.sensitivity, point.specificity, prevalence)
    keep = operating_point.meaningful_metrics(positives, negatives)
    values = dict(zip(METRIC_KEYS, (point.sensitivity, point.specificity, ppv, npv, point.f1)))
    return [shown(v) if k in keep else "n/a" for k, v in values.items()]


def test_the_pages_render_in_about_a_second(weights):
    timings = {}
    for page in ("confusion_matrices.py", "metric_explorer.py", "model_card.py"):
        run_page(page)  # the first run pays for imports
        start = time.perf_counter()
        run_page(page)
        timings[page] = time.perf_counter() - start
    print("render seconds:", {k: round(v, 3) for k, v in timings.items()})
    assert max(timings.values()) < 5, timings  # generous: the machine may be busy training


# --- confusion matrices --------------------------------------------------------------------------------------------


def test_confusion_page_shows_metrics_json_for_every_split_view_and_source(weights):
    metrics = saved.load_metrics(weights)
    at = run_page("confusion_matrices.py")
    assert at.selectbox(key="confusion_split").options == [saved.split_label(metrics, s)
                                                           for s in saved.available_splits(metrics)]
    for split in saved.available_splits(metrics):
        rerun(at, "selectbox", "confusion_split", split)
        table = at.dataframe[0].value
        pd.testing.assert_frame_equal(table, eval_figures.per_source_table(metrics["splits"][split]))
        overall = metrics["splits"][split]["overall"]
        assert table.loc[0, "images"] == overall["n"]
        assert table.loc[0, "accuracy"] == pytest.approx(overall["summary"]["accuracy"]["value"], nan_ok=True)
        predictions = saved.load_predictions(weights, split)  # the CSV and metrics.json agree
        np.testing.assert_array_equal(
            skm.confusion_matrix(predictions.y_true, predictions.probs.argmax(1), labels=[0, 1, 2]),
            overall["confusion_matrix"])
        rule = rule_from_sidecar(read_sidecar(weights))
        assert at.radio(key="confusion_rule").value == ("argmax" if rule.covid_threshold is None else "decision")
        for source, rule_name in [(s, "argmax") for s in ["all", *saved.sources_of(metrics, split)]] + \
                [(s, "decision") for s in ["all", *saved.sources_of(metrics, split)] if rule.covid_threshold]:
            rerun(at, "selectbox", f"source_{split}", source)
            rerun(at, "radio", "confusion_rule", rule_name)
            if rule_name == "argmax":  # metrics.json's matrix
                matrix = np.array(saved.split_report(metrics, split, None if source == "all" else source)
                                  ["confusion_matrix"])
            else:  # the model's rule, counted from the saved predictions
                rows = predictions.subset(None if source == "all" else source)
                matrix = skm.confusion_matrix(rows.y_true, rule.indices(rows.probs), labels=[0, 1, 2])
            for view in eval_figures.VIEWS:
                rerun(at, "radio", "confusion_view", view)
                spec = figure(at, "confusion")
                texts = [a["text"] for a in spec["layout"]["annotations"]]
                if view == "counts":
                    assert texts == [str(v) for v in matrix.ravel()]
                else:
                    y_true, y_pred = np.repeat(np.indices(matrix.shape).reshape(2, -1), matrix.ravel(), axis=1)
                    sk = skm.confusion_matrix(y_true, y_pred, labels=[0, 1, 2],
                                              normalize={"recall": "true", "precision": "pred"}[view])
                    values = eval_figures.normalise_confusion(matrix, view)
                    np.testing.assert_allclose(np.nan_to_num(values), sk)
                    assert [t.split("</b>")[0].removeprefix("<b>") for t in texts] == \
                        ["–" if np.isnan(v) else f"{v:.2f}" for v in values.ravel()]
    if "external" in metrics["splits"]:
        rerun(at, "selectbox", "confusion_split", "external")
        assert any("measures specificity" in i.value for i in at.info)
    lungs = "\n".join(lung_energy_table(metrics))  # where the maps fall, beside an even spread over the same lungs
    assert lungs and any(lungs in m.value for m in at.markdown)


# --- metric explorer -----------------------------------------------------------------------------------------------


@pytest.fixture
def csv_downloads(downloads):
    """What a CSV download button would serve, as text."""
    return lambda url: downloads(url).decode()


def _setup(weights, split: str, k: int):
    predictions = saved.load_predictions(weights, split)
    is_positive, score = operating_point.one_vs_rest(predictions.y_true, predictions.probs, k)
    return predictions, is_positive, score, *saved.class_presence(predictions.y_true, k)


@pytest.mark.parametrize("k", range(len(CLASSES)))
def test_metric_explorer_follows_threshold_presets_and_prevalence(weights, csv_downloads, k):
    metrics = saved.load_metrics(weights)
    at = run_page("metric_explorer.py")
    for split in saved.available_splits(metrics):
        at.selectbox(key="split").set_value(split)
        rerun(at, "selectbox", "cls", CLASSES[k])
        predictions, is_positive, score, positives, negatives = _setup(weights, split, k)
        prevalence_key = f"prevalence_{split}_{CLASSES[k]}"
        warned = any("meaningful" in w.value for w in at.warning)
        assert warned == (not positives or not negatives)

        # the argmax rule: the numbers of metrics.json, with their bootstrap intervals
        rerun(at, "radio", "mode", "argmax")
        point = operating_point.argmax_rule(predictions.y_true, predictions.probs, k)
        prevalence = at.number_input(key=prevalence_key).value
        assert prevalence == pytest.approx(point.prevalence)
        assert shown_metrics(at) == expected_metrics(point, prevalence, positives, negatives)
        table = at.dataframe[0].value
        keep = operating_point.meaningful_metrics(positives, negatives)
        report = metrics["splits"][split]["overall"]["per_class"][CLASSES[k]]
        for row, key in zip(table.itertuples(), ("sensitivity", "specificity", "precision", "npv", "f1")):
            stored = report[key]["value"] if key.replace("precision", "ppv") in keep else None
            assert row[2] == pytest.approx(np.nan if stored is None else stored, nan_ok=True)
        csv = pd.read_csv(io.StringIO(csv_downloads(at.download_button(key="download_csv").proto.url)))
        pd.testing.assert_frame_equal(csv[table.columns].astype(table.dtypes.to_dict()), table, check_exact=False)

        # presets: the threshold in use and every number follow
        for preset in ("youden", "sens95"):
            t = operating_point.preset_threshold(preset, is_positive, score)
            if t is None:
                assert preset not in at.radio(key="mode").options
                continue
            rerun(at, "radio", "mode", preset)
            assert at.slider(key="threshold").value == pytest.approx(round(t, 3))
            assert shown_metrics(at) == expected_metrics(operating_point.at_threshold(is_positive, score, t), point.prevalence,
                                                         positives, negatives)

        # the slider: moving it switches to a custom threshold and updates the matrix and the table exactly
        for t in (0.2, 0.45, 0.8):
            rerun(at, "slider", "threshold", t)
            assert at.radio(key="mode").value == "custom"
            custom = operating_point.at_threshold(is_positive, score, t)
            assert shown_metrics(at) == expected_metrics(custom, point.prevalence, positives, negatives)
            binary = [a["text"] for a in figure(at, "binary")["layout"]["annotations"]]
            assert binary == [f"TP<br><b>{custom.tp}</b>", f"FN<br><b>{custom.fn}</b>",
                              f"FP<br><b>{custom.fp}</b>", f"TN<br><b>{custom.tn}</b>"]
            current = at.dataframe[0].value["current operating point"].to_numpy()
            for value, key in zip(current, METRIC_KEYS):
                expected = getattr(custom, key) if key in keep else np.nan
                assert value == pytest.approx(expected, nan_ok=True)

        # the prevalence control recomputes PPV and NPV (Bayes) and nothing else; off where PPV/NPV are undefined
        assert at.number_input(key=prevalence_key).disabled == (not positives or not negatives)
        for prevalence in (0.01, 0.3) if positives and negatives else ():
            rerun(at, "number_input", prevalence_key, prevalence)
            assert [m.label for m in at.metric][2:4] == [f"PPV at prevalence {prevalence:.4f}",
                                                         f"NPV at prevalence {prevalence:.4f}"]
            assert shown_metrics(at) == expected_metrics(custom, prevalence, positives, negatives)
            current = at.dataframe[0].value["current operating point"].to_numpy()
            ppv, npv = operating_point.adjusted_predictive_values(custom.sensitivity, custom.specificity, prevalence)
            assert current[-2:] == pytest.approx([ppv, npv], nan_ok=True)
            assert current[:5] == pytest.approx([getattr(custom, key) for key in METRIC_KEYS], nan_ok=True)

        # curves only where both sides exist, with the operating points marked at their coordinates
        if positives and negatives:
            roc = figure(at, "roc")
            marks = {d["name"]: (d["x"][0], d["y"][0]) for d in roc["data"] if d.get("mode") == "markers"}
            assert marks["current threshold"] == pytest.approx((custom.fpr, custom.sensitivity))
            assert marks["argmax rule"] == pytest.approx((point.fpr, point.sensitivity))
            figure(at, "pr")
        else:
            with pytest.raises(KeyError):
                at.get_by_key("roc")
            assert any("ROC and precision-recall curves need" in i.value for i in at.info)
        reliability = figure(at, "reliability")
        after = metrics["splits"][split]["calibration"]["after"]
        assert f"ECE {after['ece']:.3f}, Brier {after['brier']:.3f}" in reliability["data"][2]["name"]


def test_metric_explorer_starts_on_the_models_rule_for_covid(weights):
    """The model's own COVID-19 threshold is the first rule offered and the one a fresh page shows; argmax stays
    on offer for comparison; other classes (for which the rule is no threshold) start on argmax."""
    rule = rule_from_sidecar(read_sidecar(weights))
    if rule.covid_threshold is None:
        pytest.skip("these weights carry no fitted decision rule")
    at = run_page("metric_explorer.py")
    at.selectbox(key="split").set_value("test")
    rerun(at, "selectbox", "cls", "covid")
    assert at.radio(key="mode").options[:2] == [operating_point.PRESETS["decision"], operating_point.PRESETS["argmax"]]
    assert at.radio(key="mode").value == "decision"
    predictions, is_positive, score, positives, negatives = _setup(weights, "test", 0)
    point = operating_point.at_threshold(is_positive, score, rule.covid_threshold)
    assert shown_metrics(at) == expected_metrics(point, point.prevalence, positives, negatives)
    assert any("the model's decision rule" in c.value for c in at.caption)
    rerun(at, "selectbox", "cls", "normal")
    assert at.radio(key="mode").value == "argmax"
    assert operating_point.PRESETS["decision"] not in at.radio(key="mode").options


def test_external_sets_give_hannover_sensitivity_and_shenzhen_specificity(weights):
    """Hannover holds only COVID-19 films and Shenzhen only normals: together they define sensitivity and
    specificity for COVID-19, and the page shows the argmax rule's values for them."""
    metrics = saved.load_metrics(weights)
    if "external" not in metrics["splits"]:
        pytest.skip("no external split")
    at = run_page("metric_explorer.py")
    at.selectbox(key="split").set_value("external")
    rerun(at, "selectbox", "cls", "covid")
    predictions = saved.load_predictions(weights, "external")
    is_covid = predictions.y_true == 0
    assert set(predictions.sources[is_covid]) == {"Hannover"} and set(predictions.sources[~is_covid]) == {"Shenzhen"}
    point = operating_point.argmax_rule(predictions.y_true, predictions.probs, 0)
    rerun(at, "radio", "mode", "argmax")  # the argmax preset, kept for comparison with the model's own rule
    values = shown_metrics(at)
    assert values[:2] == [shown(point.sensitivity), shown(point.specificity)]
    assert not any("Only sensitivity is meaningful" in w.value for w in at.warning)
    hannover = metrics["reads_the_lungs"]["external"]["hannover_covid_sensitivity"]["value"]
    assert point.sensitivity == pytest.approx(hannover)


# --- model card, and pages without artifacts -----------------------------------------------------------------------


def test_model_card_shows_the_card_and_the_sidecar_version(weights):
    at = run_page("model_card.py")
    sidecar = read_sidecar(weights)
    assert at.metric[0].value == sidecar["weights_sha256"][:12]
    assert any(sidecar["weights_sha256"] in m.value for m in at.markdown)
    card = (weights / "MODEL_CARD.md").read_text()
    assert any(m.value == card.strip() for m in at.markdown)  # st.markdown strips the final newline
    assert not at.warning and not at.error


def test_pages_without_evaluation_results_say_so(weights, tmp_path, monkeypatch):
    bare = tmp_path / "weights"
    bare.mkdir()
    shutil.copy(weights / "model.json", bare / "model.json")
    monkeypatch.setenv("COVIDVIZ_WEIGHTS", str(bare))
    at = run_page("model_card.py")
    assert any("no results section yet" in w.value for w in at.warning)
    assert any("rendered from the sidecar" in i.value for i in at.info)
    assert any(m.value.startswith("# Model card") for m in at.markdown)
    for page in ("confusion_matrices.py", "metric_explorer.py"):
        at = run_page(page)
        assert any("python -m covidviz evaluate" in w.value for w in at.warning)
    shutil.copy(weights / "MODEL_CARD.md", bare / "MODEL_CARD.md")
    at = run_page("model_card.py")
    assert any(m.value == (weights / "MODEL_CARD.md").read_text().strip() for m in at.markdown)


def test_loaders_explain_missing_and_malformed_artifacts(weights, tmp_path):
    with pytest.raises(saved.EvalArtifactsError, match="python -m covidviz evaluate"):
        saved.load_metrics(tmp_path)
    with pytest.raises(saved.EvalArtifactsError, match="validation"):
        saved.load_predictions(tmp_path, "val")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "test_predictions.csv").write_text("file,source,true,p_covid\na.png,NIH,normal,0.2\n")
    with pytest.raises(saved.EvalArtifactsError, match="p_pneumonia"):
        saved.load_predictions(tmp_path, "test")
    (tmp_path / "eval" / "metrics.json").write_text("{not json")
    with pytest.raises(saved.EvalArtifactsError, match="not valid JSON"):
        saved.load_metrics(tmp_path)
    predictions = saved.load_predictions(weights, "test")
    assert predictions.probs.shape == (predictions.n, 3) and set(np.unique(predictions.y_true)) <= {0, 1, 2}
    np.testing.assert_allclose(predictions.probs.sum(1), 1, atol=1e-5)
    source = predictions.sources[0]
    assert (predictions.subset(source).sources == source).all()


@pytest.mark.parametrize("page", ["confusion_matrices.py", "metric_explorer.py", "model_card.py"])
def test_pages_render_inside_the_app_navigation(weights, page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()  # st.navigation registers the pages (and their URL paths) on the first run
    at.switch_page(f"app_pages/{page}")
    at.run(timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert at.main.caption[0].value.startswith("⚠️")  # the disclaimer comes first
