"""The model's decision rule and its abstentions: fitted on validation only, recorded in the sidecar, the same in
every output, and no class for an image that is not a chest film the model can read."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from covidviz import CLASSES
from covidviz.evaluation.artifacts.decision_artifact import load_decision_report
from covidviz.evaluation.artifacts.saved import load_predictions
from covidviz.evaluation.measures.decision_fit import covid_rates, fit_rule
from covidviz.model.decision import ARGMAX_RULE, COVID, DecisionRule, abstention_reason, rule_from_sidecar
from covidviz.verified import read_sidecar
from tests.conftest import FIXTURES, ROOT, WEIGHTS, fixture_rows


@pytest.fixture(scope="module")
def noise_jpeg(tmp_path_factory):
    """A real JPEG of random colour noise: the kind of input that once got "covid" at 80%."""
    path = tmp_path_factory.mktemp("noise") / "noise.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_the_shipped_rule_is_the_one_validation_gives():
    """The sidecar's threshold is what fitting on the committed validation predictions gives, its validation
    sensitivity meets the target, and the report beside it names the same rule."""
    sidecar = read_sidecar(WEIGHTS)["decision"]
    val = load_predictions(WEIGHTS, "val")
    refit = fit_rule(val.y_true, val.probs, sidecar["target_sensitivity"])
    assert sidecar["fitted_on"] == "validation"
    assert rule_from_sidecar(read_sidecar(WEIGHTS)) == refit
    rates = covid_rates(refit, val.y_true, val.probs)["covid"]
    assert rates["sensitivity"] >= sidecar["target_sensitivity"] == pytest.approx(0.90)
    assert rates["sensitivity"] == pytest.approx(sidecar["validation_sensitivity"])
    # the most specific such rule: the next higher validation score would miss the target
    scores = np.sort(np.unique(val.probs[:, COVID]))
    higher = scores[scores > refit.covid_threshold]
    if higher.size:
        assert covid_rates(DecisionRule(float(higher[0])), val.y_true, val.probs)["covid"]["sensitivity"] < 0.90
    report = load_decision_report(WEIGHTS)
    assert report["covid_threshold"] == refit.covid_threshold and report["fitted_on"] == "validation"


def test_each_fold_threshold_is_fitted_on_that_folds_validation():
    report = load_decision_report(WEIGHTS)["cross_validation"]
    for name, fold in report["folds"].items():
        val = load_predictions(WEIGHTS / "comparison" / "cv" / name, "val")
        assert fold["threshold"] == fit_rule(val.y_true, val.probs).covid_threshold, name


def test_the_rule_calls_covid_at_the_threshold_and_else_the_larger_of_the_others():
    val = load_predictions(WEIGHTS, "val")
    rule = rule_from_sidecar(read_sidecar(WEIGHTS))
    called = rule.indices(val.probs)
    covid = val.probs[:, COVID] >= rule.covid_threshold
    assert (called[covid] == COVID).all()
    others = val.probs[~covid].copy()
    others[:, COVID] = -1
    assert np.array_equal(called[~covid], others.argmax(1))
    assert (called != val.probs.argmax(1)).any()  # not argmax by another name
    assert rule.label(dict(zip(CLASSES, val.probs[0]))) == CLASSES[called[0]]


def test_a_sidecar_without_a_rule_keeps_argmax_and_still_loads(tmp_path):
    """Older and comparison models carry no "decision": they load, verified, and answer by argmax."""
    from covidviz.model.predictor import Predictor
    for name in ("model.safetensors", "ood.safetensors", "ood.json", "lungs"):
        (tmp_path / name).symlink_to(WEIGHTS / name)
    sidecar = read_sidecar(WEIGHTS)
    del sidecar["decision"]
    (tmp_path / "model.json").write_text(json.dumps(sidecar))
    assert rule_from_sidecar(sidecar) == ARGMAX_RULE
    predictor = Predictor(tmp_path, engine="torch")
    assert predictor.decision == ARGMAX_RULE
    row = fixture_rows()[0]
    prediction = predictor.predict_bytes((FIXTURES / row["fixture"]).read_bytes(), row["fixture"])
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)


def test_abstention_reasons():
    assert abstention_reason(30.0, 56.0, True) is None
    assert abstention_reason(None, None, None) is None  # a model without the checks never abstains for them
    assert abstention_reason(184.4, 55.6, True) == ("unlike the films the model was trained on (OOD distance 184 > "
                                                   "threshold 56)")
    assert abstention_reason(30.0, 56.0, False) == "no plausible pair of lungs found"


def test_predict_json_gives_no_class_for_noise_and_a_class_for_a_real_xray(noise_jpeg):
    """The real CLI on a real noise JPEG and a real chest film from the pool's fixtures."""
    xray = FIXTURES / fixture_rows()[0]["fixture"]
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", "--json", "--engine", "torch",
                             str(noise_jpeg), str(xray)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    noise, film = (json.loads(line) for line in result.stdout.splitlines())
    assert "label" in noise and noise["label"] is None
    assert "unlike the films the model was trained on" in noise["abstained"]
    assert set(noise["probabilities"]) == set(CLASSES)  # kept for the record, not as an answer
    assert film["abstained"] is None and film["label"] in CLASSES
    rule = rule_from_sidecar(read_sidecar(WEIGHTS))
    assert film["label"] == rule.label(film["probabilities"])


def test_predict_plain_line_says_no_class(noise_jpeg):
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", "--engine", "torch", str(noise_jpeg)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    fields = result.stdout.strip().split("\t")
    assert fields[1] == "NO CLASS" and fields[3].startswith("ABSTAINED: unlike the films")
