"""The out-of-distribution guard on the shipped model: non-chest images flagged, chest X-rays pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidviz.data.ood_sets import non_chest_dicoms, skimage_pictures
from covidviz.explain.reading import read_xray
from covidviz.io.loading import load_xray
from covidviz.model.ood import fit_guard, load_guard
from tests.conftest import FIXTURES, WEIGHTS, fixture_rows


@pytest.fixture(scope="module")
def guard():
    guard = load_guard(WEIGHTS)
    assert guard is not None, "weights/ood.safetensors is missing: run python -m covidviz evaluate"
    return guard


def test_offline_non_chest_images_are_flagged_as_metrics_json_says(predictor, guard):
    others = {**skimage_pictures(), **non_chest_dicoms()}
    recorded = json.loads((WEIGHTS / "eval" / "metrics.json").read_text())["ood"]
    assert len(others) == sum(v["n"] for v in recorded["detection"].values())
    flagged = {name: read_xray(predictor, xray, name, guard).is_outlier for name, xray in others.items()}
    for label, prefix in (("skimage pictures", "skimage:"), ("non-chest DICOMs", "dicom:")):
        rate = np.mean([f for n, f in flagged.items() if n.startswith(prefix)])
        assert rate == pytest.approx(recorded["detection"][label]["rate"])
    assert np.mean(list(flagged.values())) >= 0.9


def test_real_chest_fixtures_from_the_pool_sources_are_not_flagged(predictor, guard):
    """Hannover (a hospital the model never saw) may draw a caution or a flag; the pool's sources must not."""
    for row in (r for r in fixture_rows() if not r["data_file"].startswith("external/")):
        name = row["fixture"]
        reading = read_xray(predictor, load_xray((FIXTURES / name).read_bytes(), name), name, guard)
        assert not reading.is_outlier, (name, reading.ood_distance, guard.threshold)


def test_thresholds_follow_their_rules_on_hand_worked_numbers():
    """One feature, so the distance is |x - mean| / sd (Ledoit-Wolf shrinks nothing in one dimension):
    training features -1 and +1 (mean 0, sd 1); validation distances 1, 2, ..., 100, so their 99th percentile
    is 1 + 0.99 * 99 = 99.01; non-chest distances 300 and 500, so the hard threshold is (100 + 300) / 2 = 200."""
    train = np.array([[-1.0], [1.0]] * 50)
    val = np.arange(1.0, 101.0)[:, None]
    far = np.array([[300.0], [-500.0]])
    guard = fit_guard(train, val, far)
    assert guard.caution == pytest.approx(99.01)
    assert guard.threshold == pytest.approx(200.0)
    assert guard.distance(np.array([[-3.0]])) == pytest.approx([3.0])
    assert list(guard.is_outlier(np.array([[150.0], [-199.0], [201.0], [-250.0]]))) == [False, False, True, True]
