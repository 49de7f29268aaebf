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
from covidviz.evaluation.measures.decision_fit import covid_rates, fit_rule, midway_below
from covidviz.model.decision import (
    ARGMAX_RULE,
    COLOUR_REASON,
    COVID,
    DecisionRule,
    abstention_reason,
    rule_from_sidecar,
)
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
    # the most specific such rule: a threshold above the least score it calls would miss the target
    scores = np.sort(np.unique(val.probs[:, COVID]))
    called, not_called = scores[scores >= refit.covid_threshold], scores[scores < refit.covid_threshold]
    assert covid_rates(DecisionRule(float(called[0])), val.y_true, val.probs)["covid"]["sensitivity"] >= 0.90
    assert covid_rates(DecisionRule(float(called[1])), val.y_true, val.probs)["covid"]["sensitivity"] < 0.90
    # and no validation film sits on it: halfway between the least score it calls and the next lower one
    assert refit.covid_threshold == pytest.approx((called[0] + not_called[-1]) / 2, abs=1e-12)
    assert called[0] - refit.covid_threshold > 1e-6  # wider than the saved predictions' rounding
    report = load_decision_report(WEIGHTS)
    assert report["covid_threshold"] == refit.covid_threshold and report["fitted_on"] == "validation"


def test_the_threshold_moves_halfway_to_the_next_lower_score_and_calls_the_same_films():
    score = np.array([0.1, 0.3, 0.3, 0.7, 0.2])
    assert midway_below(score, 0.3) == pytest.approx(0.25)
    assert midway_below(score, 0.1) == 0.1  # nothing lower: the threshold stays
    other = (COVID + 1) % 3
    y_true = np.array([COVID, COVID, other, COVID, other])
    probs = np.zeros((5, 3))
    probs[:, COVID], probs[:, other] = score, 1 - score
    fitted = fit_rule(y_true, probs, target=1.0)  # every COVID-19 film called: the tightest threshold is 0.1
    assert fitted.covid_threshold == 0.1
    fitted = fit_rule(y_true, probs, target=2 / 3)  # two of three: 0.3 is the tightest, 0.25 the rule
    assert fitted.covid_threshold == pytest.approx(0.25)
    assert np.array_equal(fitted.indices(probs) == COVID, score >= 0.3)


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
    assert abstention_reason(30.0, 56.0, True, False) is None
    assert abstention_reason(None, None, None, False) is None  # a model without the checks never abstains for them
    assert abstention_reason(184.4, 55.6, True, False) == ("unlike the films the model was trained on (OOD distance "
                                                          "184 > threshold 56)")
    assert abstention_reason(30.0, 56.0, False, False) == "no plausible pair of lungs found"
    # a colour picture gets no class even where its features lie among the films' and its "lungs" look plausible
    assert abstention_reason(30.0, 56.0, True, True) == COLOUR_REASON
    assert abstention_reason(None, None, None, True) == COLOUR_REASON


def test_predict_json_gives_no_class_for_noise_and_a_class_for_a_real_xray(noise_jpeg, tmp_path):
    """The real CLI on a real noise JPEG, the same noise in gray (so the colour check cannot be what stops it)
    and a real chest film from the pool's fixtures."""
    xray = FIXTURES / fixture_rows()[0]["fixture"]
    gray_noise = tmp_path / "gray_noise.jpg"
    Image.open(noise_jpeg).convert("L").save(gray_noise, quality=90)
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", "--json", "--engine", "torch",
                             str(noise_jpeg), str(gray_noise), str(xray)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    noise, gray, film = (json.loads(line) for line in result.stdout.splitlines())
    assert "label" in noise and noise["label"] is None
    assert "unlike the films the model was trained on" in noise["abstained"] and COLOUR_REASON in noise["abstained"]
    assert gray["label"] is None and COLOUR_REASON not in gray["abstained"]
    assert "unlike the films the model was trained on" in gray["abstained"]
    assert set(noise["probabilities"]) == set(CLASSES)  # kept for the record, not as an answer
    assert film["abstained"] is None and film["label"] in CLASSES
    rule = rule_from_sidecar(read_sidecar(WEIGHTS))
    assert film["label"] == rule.label(film["probabilities"])


def test_predict_plain_line_says_no_class(noise_jpeg):
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", "--engine", "torch", str(noise_jpeg)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    fields = result.stdout.strip().split("\t")
    assert fields[1] == "NO CLASS" and fields[3].startswith(f"ABSTAINED: {COLOUR_REASON}")
    assert "unlike the films the model was trained on" in fields[3]


def test_the_model_card_carries_the_decision_table_from_its_artifact():
    from covidviz.evaluation.documents.decision_facts import decision_lines
    from covidviz.evaluation.documents.facts import fmt_ci
    report = load_decision_report(WEIGHTS)
    card = (WEIGHTS / "MODEL_CARD.md").read_text()
    assert "\n".join(decision_lines(report)) in card
    hannover = report["splits"]["Hannover"]["covid_threshold"]["sensitivity"]
    shenzhen = report["splits"]["Shenzhen"]["covid_threshold"]["specificity"]
    assert fmt_ci(hannover) in card and fmt_ci(shenzhen) in card


def test_abstention_counts_and_what_the_rule_had_right():
    from covidviz.evaluation.measures.abstention import abstention_summary
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1], [0.3, 0.1, 0.6]])
    y = np.array([0, 2, 0, 2])
    got = abstention_summary(y, probs, np.array([10.0, 80.0, 20.0, 30.0]), np.array([True, True, False, True]),
                             50.0, DecisionRule(0.25))
    # film 1 is far (abstained; the rule says normal: right), film 2 has no lungs (covid at 0.2 < 0.25:
    # pneumonia, wrong); films 0 and 3 are answered: covid right, and 0.3 >= 0.25 calls film 3 covid: wrong
    assert got == {"n": 4, "abstained": 2, "rate": 0.5, "out_of_distribution": 1, "no_plausible_lungs": 1,
                   "abstained_right": 1, "answered_accuracy": 0.5}


def test_the_abstention_summary_is_what_the_per_film_file_gives():
    """abstention.json is recomputed, without the model, from the per-film OOD distances and lung checks (which
    measure-abstention took from the real model) and the committed predictions."""
    from covidviz.evaluation.artifacts.abstention_artifact import PER_FILM_FILE, load_abstention, summarise
    if not (WEIGHTS / "eval" / PER_FILM_FILE).is_file():
        pytest.skip("measure-abstention has not run for these weights")
    stored = load_abstention(WEIGHTS)
    assert stored == json.loads(json.dumps(summarise(WEIGHTS)))
    sizes = {split: load_predictions(WEIGHTS, split).n for split in ("val", "test")}
    assert {s: stored["sets"][s]["n"] for s in sizes} == sizes
    external = load_predictions(WEIGHTS, "external")
    assert stored["sets"]["Hannover"]["n"] + stored["sets"]["Shenzhen"]["n"] == external.n
    from covidviz.evaluation.documents.decision_facts import abstention_lines
    assert "\n".join(abstention_lines(stored)) in (WEIGHTS / "MODEL_CARD.md").read_text()
