"""The "reads the lungs" measures on tiny predictions whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from covidviz.evaluation.measures.lung_reading import lung_energy_summary, reads_the_lungs

C, P, N = 0, 1, 2  # covid, pneumonia, normal


def _probs(predicted: list[int], covid_score: list[float] | None = None) -> np.ndarray:
    out = np.full((len(predicted), 3), 0.05)
    for i, k in enumerate(predicted):
        out[i, k] = 0.9
    if covid_score is not None:
        out[:, C] = covid_score
    return out / out.sum(1, keepdims=True)


def test_external_sensitivity_specificity_and_auc():
    # Hannover: 4 COVID-19 films, 3 called COVID-19 -> sensitivity 3/4.
    # Shenzhen: 4 normals, one called COVID-19, one pneumonia -> specificity 3/4, called normal 2/4.
    y = np.array([C, C, C, C, N, N, N, N])
    predicted = [C, C, C, N, C, P, N, N]
    sources = ["Hannover"] * 4 + ["Shenzhen"] * 4
    # COVID-19 scores: 0.9 where called COVID-19, else 0.05. Of the 16 (covid, normal) pairs, the three detected
    # films tie with the normal called COVID-19 (3 x 0.5) and beat the other three normals (9); the missed film
    # loses to it (0) and ties with the other three (3 x 0.5): (9 + 1.5 + 1.5) / 16 = 0.75.
    probs = _probs(predicted)
    out = reads_the_lungs((y, probs, ["SIIM"] * 8), (y, probs, sources), n_boot=0)["external"]
    assert out["hannover_covid_sensitivity"]["value"] == pytest.approx(0.75)
    assert out["shenzhen_specificity"]["value"] == pytest.approx(0.75)
    assert out["shenzhen_called_normal"]["value"] == pytest.approx(0.5)
    assert out["covid_roc_auc"]["value"] == pytest.approx(12 / 16)
    assert (out["n_covid"], out["n_normal"]) == (4, 4)


def test_within_source_auc_uses_only_that_source_and_internal_rates():
    # SIIM: covid scores 0.8, 0.6 vs normal 0.7, 0.1 -> pairs won: (0.8>0.7, 0.8>0.1, 0.6<0.7, 0.6>0.1) = 3/4.
    # Kermany rows are perfect and must not change the SIIM figure.
    y = np.array([C, C, N, N, P, N])
    probs = _probs([C, C, C, N, P, N], covid_score=[0.8, 0.6, 0.7, 0.1, 0.0, 0.0])
    sources = ["SIIM"] * 4 + ["Kermany"] * 2
    out = reads_the_lungs((y, probs, sources), (y, probs, sources), n_boot=0)
    assert out["within_source"]["SIIM"]["covid_roc_auc"]["value"] == pytest.approx(0.75)
    assert out["within_source"]["ieee8023"]["covid_roc_auc"]["value"] is None  # no ieee8023 rows
    internal = out["internal_test"]
    # argmax: covid called for rows 0, 1, 2 (row 2's covid 0.7 beats normal after the override) -> 2 of 3 calls right
    assert internal["covid_sensitivity"]["value"] == pytest.approx(1.0)
    assert internal["covid_precision"]["value"] == pytest.approx(2 / 3)
    assert internal["accuracy"]["value"] == pytest.approx(5 / 6)


def test_bootstrap_interval_brackets_the_value():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    probs[np.arange(200), y] += 0.5
    probs /= probs.sum(1, keepdims=True)
    out = reads_the_lungs((y, probs, ["SIIM"] * 200), (y, probs, ["Hannover"] * 200), n_boot=200)
    value = out["internal_test"]["accuracy"]
    assert value["ci95"][0] < value["value"] < value["ci95"][1]


def test_lung_energy_median_per_split_and_class_skips_films_without_lungs():
    y = np.array([C, C, C, N, N])
    shares = np.array([0.9, 0.5, np.nan, 0.2, 0.4])
    out = lung_energy_summary({"test": (y, shares)})["test"]
    assert out["median"] == pytest.approx(0.45)  # median of 0.9, 0.5, 0.2, 0.4
    assert out["by_class"] == {"covid": pytest.approx(0.7), "pneumonia": None, "normal": pytest.approx(0.3)}
    assert (out["n_with_lungs"], out["n"]) == (4, 5)
