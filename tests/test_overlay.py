"""Overlays never alter the original and show nothing where the model saw nothing."""

from __future__ import annotations

import numpy as np

from covidviz.explain.overlay import blend, contour, downscale, gray_to_rgb, render


def _scene():
    gray = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    cam = np.full((300, 200), np.nan, np.float32)
    cam[50:250, :] = np.linspace(0, 1, 200)[None, :]
    return gray, cam


def test_the_original_array_is_never_modified():
    gray, cam = _scene()
    copy = gray.copy()
    for style in ("heatmap", "contour"):
        render(gray, cam, style, "viridis", 0.5, 0.3)
    np.testing.assert_array_equal(gray, copy)


def test_unseen_region_stays_plain_gray():
    gray, cam = _scene()
    out = blend(gray, cam, "inferno", 0.6)
    np.testing.assert_array_equal(out[:50], gray_to_rgb(gray)[:50])
    assert np.abs(out[100:200].astype(int) - gray_to_rgb(gray)[100:200]).mean() > 10


def test_threshold_hides_weak_values_and_contour_outlines_strong_ones():
    gray, cam = _scene()
    out = render(gray, cam, "heatmap", "inferno", 0.6, threshold=0.5)
    np.testing.assert_array_equal(out[100:200, :90], gray_to_rgb(gray)[100:200, :90])
    lines = contour(np.zeros_like(gray), cam, threshold=0.5)
    changed = np.argwhere(lines.sum(axis=2) > 0)
    assert changed.size and changed[:, 1].min() >= 95  # the outline sits around the right half only


def test_downscale_keeps_nan_regions():
    _, cam = _scene()
    big = np.kron(cam, np.ones((8, 8), np.float32))  # 2400 x 1600
    small = downscale(big, 480)
    assert max(small.shape) == 480 and np.isnan(small[:5]).all() and not np.isnan(small[100:200]).any()


def test_the_colour_key_runs_from_the_maps_lowest_colour_to_its_highest():
    from covidviz.explain.overlay import COLORMAPS, blend, colour_strip
    for colormap in COLORMAPS.values():
        strip = colour_strip(colormap, width=100, height=5)
        assert strip.shape == (5, 100, 3) and strip.dtype == np.uint8
        ramp = np.linspace(0, 1, 100, dtype=np.float32)[None].repeat(5, axis=0)
        # an overlay at full opacity of a map rising from 0 to 1 shows exactly these colours
        assert np.abs(blend(np.zeros((5, 100), np.float32), ramp, colormap, 1.0).astype(int) - strip).max() <= 1
