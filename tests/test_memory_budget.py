"""What a session keeps of a reading: at most 2048 px of the upload, the model's box scaled to match, the
same probabilities and maps; and a per-session byte budget that drops the oldest readings first."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from covidviz.explain.reading import (
    KEPT_MAX_SIDE,
    compact,
    heatmap,
    heatmap_on_original,
    lungs_on_display,
    read_xray,
    reading_bytes,
)
from covidviz.io.loading import load_xray_file
from covidviz.io.xray import Xray
from tests.conftest import FIXTURES, fixture_rows


@pytest.fixture(scope="module")
def large(predictor):
    """A real X-ray enlarged to 4800 x 4000 px (a large detector's film), read once."""
    small = load_xray_file(FIXTURES / fixture_rows()[0]["fixture"]).pixels
    pixels = cv2.resize(small, (4000, 4800), interpolation=cv2.INTER_CUBIC).clip(0, 1).astype(np.float32)
    return read_xray(predictor, Xray(pixels=pixels), "large.png", predictor.guard)


def test_a_kept_reading_is_at_most_2048_px_and_a_fraction_of_the_memory(large):
    kept = compact(large)
    assert max(kept.xray.pixels.shape) == KEPT_MAX_SIDE
    assert kept.xray.pixels.shape == (2048, round(4000 * 2048 / 4800))
    assert reading_bytes(kept) < reading_bytes(large) / 4
    np.testing.assert_array_equal(kept.probabilities, large.probabilities)
    np.testing.assert_array_equal(kept.canonical, large.canonical)
    np.testing.assert_array_equal(kept.raw_maps, large.raw_maps)


def test_maps_and_lungs_land_where_they_did_on_the_full_image(large, predictor):
    kept = compact(large)
    cam = heatmap(large, predictor, "Grad-CAM", 0)
    full = heatmap_on_original(large, cam)
    reduced = heatmap_on_original(kept, cam)
    shrunk = cv2.resize(np.nan_to_num(full, nan=-1), reduced.shape[::-1], interpolation=cv2.INTER_NEAREST)
    seen_full, seen_kept = shrunk >= 0, ~np.isnan(reduced)
    assert np.mean(seen_full != seen_kept) < 0.01  # the region the model read, to a pixel at the edges
    both = seen_full & seen_kept
    assert np.corrcoef(shrunk[both], reduced[both])[0, 1] > 0.99
    shape = (800, round(4000 * 800 / 4800))
    a, b = lungs_on_display(large, shape), lungs_on_display(kept, shape)
    if a is not None:
        assert np.mean(a != b) < 0.01


def test_a_small_reading_is_kept_as_it_is(predictor):
    reading = read_xray(predictor, load_xray_file(FIXTURES / fixture_rows()[1]["fixture"]), "small.png", None)
    assert compact(reading) is reading


def test_the_session_budget_drops_the_oldest_and_keeps_the_newest(large):
    from covidviz.ui.diagnose_view import evict_to_budget
    kept = compact(large)
    one = reading_bytes(kept)
    cache = {f"r{i}": kept for i in range(5)} | {"rejected": "The file is empty."}
    evict_to_budget(cache, budget=3 * one, limit=40)
    assert list(cache) == ["r3", "r4", "rejected"]
    evict_to_budget(cache, budget=1, limit=40)
    assert list(cache) == ["rejected"]  # the newest always stays
    cache = {f"r{i}": "x" for i in range(50)}
    evict_to_budget(cache, budget=10**9, limit=40)
    assert len(cache) == 40 and "r49" in cache
