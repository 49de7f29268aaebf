"""Acquisition transforms (covidviz.data.acquisition) and the acquisition-shift measurement built on them."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from covidviz.data.acquisition import DIGITISED_PARTS, TRANSFORMS, digitised_film
from covidviz.evaluation.artifacts.shift_artifact import CLEAN, COLUMNS, load_shift, shift_summary, summarise
from tests.conftest import FIXTURES, WEIGHTS, fixture_rows


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    """A real adult PA chest film (NIH), 256 x 256, float32 in [0, 1]."""
    from covidviz.io.loading import load_xray_file
    return load_xray_file(FIXTURES / "jrzech__00001368_000.png").pixels


def _detail(image: np.ndarray) -> float:
    """High-frequency energy: the variance of the Laplacian."""
    return float(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F).var())


def _run(name: str, image: np.ndarray, seed: int = 0) -> np.ndarray:
    return TRANSFORMS[name](image, np.random.default_rng(seed), 1.0)


def test_the_registry_names_the_issues_list():
    assert list(TRANSFORMS) == ["grain_noise", "contrast_curve", "edge_enhance", "low_resolution_jpeg",
                                "collimation_and_text", "digitised_film"]


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_transform_is_pure_seeded_and_keeps_shape_dtype_and_range(name, film):
    before = film.copy()
    for image in (film, cv2.resize(film, (200, 300), interpolation=cv2.INTER_AREA)):
        out = _run(name, image, seed=1)
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        np.testing.assert_array_equal(out, _run(name, image, seed=1))  # same seed, same film
        assert np.abs(out - _run(name, image, seed=2)).mean() > 1e-3  # another seed, another film
        assert np.abs(out - image).mean() > 0.005  # it changes the film
    np.testing.assert_array_equal(film, before)  # the input is left alone


def test_grain_adds_high_frequency_energy(film):
    assert _detail(_run("grain_noise", film)) > 2 * _detail(film)


def test_low_resolution_jpeg_loses_high_frequencies(film):
    assert _detail(_run("low_resolution_jpeg", film)) < 0.5 * _detail(film)


def test_edge_enhancement_sharpens_but_keeps_the_broad_picture(film):
    out = _run("edge_enhance", film)
    assert _detail(out) > 1.5 * _detail(film)
    broad = cv2.GaussianBlur(out, (0, 0), 8) - cv2.GaussianBlur(film, (0, 0), 8)
    assert np.abs(broad).mean() < 0.5 * np.abs(out - film).mean() + 0.01


def test_contrast_curve_changes_the_histogram_but_keeps_the_order_of_pixels(film):
    for seed in range(5):
        out = _run("contrast_curve", film, seed)
        order = np.argsort(film, axis=None, kind="stable")
        assert np.all(np.diff(out.ravel()[order]) >= -1e-6)
        hist = lambda x: np.histogram(x, bins=16, range=(0, 1))[0]  # noqa: E731
        assert np.abs(hist(out) - hist(film)).sum() > 0.1 * film.size


def test_collimation_darkens_the_border_and_burns_in_text(film):
    out = _run("collimation_and_text", film)
    edge = np.concatenate([out[:3].ravel(), out[-3:].ravel(), out[:, :3].ravel(), out[:, -3:].ravel()])
    assert np.median(edge) < 0.12 < np.median(np.concatenate([film[:3].ravel(), film[-3:].ravel()]))
    centre = (slice(100, 156), slice(100, 156))
    np.testing.assert_allclose(out[centre], film[centre], atol=1e-6)  # the lungs are left alone
    assert ((out > 0.85) & (film < 0.7)).sum() > 20  # white text where the film was not white


def test_digitised_film_replaces_fine_detail_and_adds_a_uniform_bright_film_edge(film):
    out = _run("digitised_film", film)
    fine = lambda x: (x - cv2.GaussianBlur(x, (0, 0), 2))[30:-30, 30:-30].ravel()  # noqa: E731
    assert np.corrcoef(fine(out), fine(film))[0, 1] < 0.7  # the scanner's blur and the film's grain
    sides = [out[:2], out[-2:], out[:, :2], out[:, -2:]]
    assert any(side.std() < 1e-6 and side.mean() > 0.8 for side in sides)  # unexposed film along one edge
    assert not any(side.std() < 1e-6 for side in (film[:2], film[-2:], film[:, :2], film[:, -2:]))


def test_digitised_film_parts_draw_as_the_whole_transform_does(film):
    """A part applied alone is that part of the whole transform, drawn from the same random numbers: no part
    leaves the film as it was, the edge alone puts the whole transform's band on the untouched film, and all
    five are the whole transform."""
    whole = _run("digitised_film", film)
    np.testing.assert_array_equal(digitised_film(film, np.random.default_rng(0), 1.0, parts=DIGITISED_PARTS), whole)
    np.testing.assert_array_equal(digitised_film(film, np.random.default_rng(0), 1.0, parts=()), film)
    edge = digitised_film(film, np.random.default_rng(0), 1.0, parts=("edge",))
    band = edge != film
    assert band.any() and np.ptp(edge[band]) == 0 and np.all(whole[band] == edge[band])
    with pytest.raises(ValueError, match="unknown digitised-film part"):
        digitised_film(film, np.random.default_rng(0), 1.0, parts=("grain", "dust"))


@pytest.mark.parametrize("bad", [np.zeros((4, 64, 64), np.float32), np.zeros((64, 64), np.uint8),
                                 np.full((64, 64), 1.5, np.float32), np.full((64, 64), np.nan, np.float32),
                                 np.full((64, 64), -0.1, np.float32), [[0.5] * 64] * 64])
def test_bad_input_is_a_value_error(bad):
    for transform in TRANSFORMS.values():
        with pytest.raises(ValueError):
            transform(bad, np.random.default_rng(0), 1.0)


def test_a_negative_strength_is_a_value_error(film):
    with pytest.raises(ValueError, match="strength"):
        TRANSFORMS["grain_noise"](film, np.random.default_rng(0), -1.0)


# --- the summary ------------------------------------------------------------------------------------------------------


def test_the_summary_of_a_hand_made_frame():
    files, true = ["a", "b", "c", "d"], ["covid", "covid", "normal", "pneumonia"]
    clean = ["covid", "normal", "normal", "pneumonia"]
    shifted = ["normal", "normal", "covid", "pneumonia"]  # a and c flip
    rows = [{"file": f, "true": t, "transform": CLEAN, "label": c, "ood_distance": 10.0, "flagged": False,
             "lungs_plausible": True} for f, t, c in zip(files, true, clean)]
    rows += [{"file": f, "true": t, "transform": "blur", "label": s, "ood_distance": 50.0 if f == "a" else 10.0,
              "flagged": f == "a", "lungs_plausible": f not in ("a", "b")} for f, t, s in zip(files, true, shifted)]
    frame = pd.DataFrame(rows[::-1], columns=list(COLUMNS))  # order of rows does not matter
    summary = shift_summary(frame)
    assert set(summary) == {"blur", CLEAN}
    blur = summary["blur"]
    assert blur["films"] == 4 and blur["flipped"] == 2 and blur["flip_rate"]["mean"] == 0.5
    lo, hi = blur["flip_rate"]["ci95"]
    assert 0 <= lo < 0.5 < hi <= 1
    assert blur["flagged_ood"] == 0.25 and blur["no_plausible_lungs"] == 0.5 and blur["abstained"] == 0.5
    assert blur["flips_by_class"] == {"covid": {"films": 2, "flipped": 1}, "normal": {"films": 1, "flipped": 1},
                                      "pneumonia": {"films": 1, "flipped": 0}}
    assert summary[CLEAN]["flipped"] == 0 and summary[CLEAN]["abstained"] == 0.0


def test_the_shipped_summary_is_the_shipped_per_film_file_summarised():
    shipped = load_shift(WEIGHTS)
    assert shipped is not None, "weights/eval/shift.json is missing: run `python -m covidviz measure-shift`"
    assert summarise(WEIGHTS) == shipped
    from covidviz.verified import read_sidecar
    assert shipped["weights_sha256"] == read_sidecar(WEIGHTS)["weights_sha256"]
    assert set(shipped["transforms"]) == {CLEAN, *TRANSFORMS}
    assert all(s["films"] == shipped["sample"]["films"] for s in shipped["transforms"].values())


# --- the run, end to end on the real model ---------------------------------------------------------------------------


def test_the_run_reads_fixtures_clean_and_shifted_through_the_upload_path(predictor):
    from covidviz.evaluation.artifacts.shift_run import measure_films
    from covidviz.io.loading import load_xray_file
    rows = fixture_rows()[:3]
    files = [r["fixture"] for r in rows]
    grays = [load_xray_file(FIXTURES / f).pixels for f in files]
    frame = measure_films(predictor, grays, files, [r["class"] for r in rows], seed=7, transforms=["digitised_film"])
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 6
    assert list(frame["transform"]) == [CLEAN] * 3 + ["digitised_film"] * 3
    clean = frame[frame["transform"] == CLEAN]
    for file, (_, row) in zip(files, clean.iterrows()):  # the clean rows are what an upload of the file gets
        p = predictor.predict_bytes((FIXTURES / file).read_bytes(), file)
        assert row["label"] == predictor.decision.label(p.probabilities)
        assert row["ood_distance"] == pytest.approx(p.ood_distance, abs=1e-3)
        assert row["flagged"] == (p.ood_distance > predictor.guard.threshold)
        assert row["lungs_plausible"] == p.lungs_plausible
    shifted = frame[frame["transform"] == "digitised_film"]
    assert not np.allclose(shifted["ood_distance"].to_numpy(), clean["ood_distance"].to_numpy())
    again = measure_films(predictor, grays, files, [r["class"] for r in rows], seed=7, transforms=["digitised_film"])
    pd.testing.assert_frame_equal(frame, again)  # seeded: the same films, the same rows


def test_training_draws_acquisition_transforms_from_its_generator_only(film):
    import torch

    from covidviz.training.augment import random_acquisition
    batch = np.stack([film] * 6)
    untouched = random_acquisition(batch, torch.Generator().manual_seed(0), 0.0)
    assert untouched is batch
    a = random_acquisition(batch, torch.Generator().manual_seed(1), 1.0)
    b = random_acquisition(batch, torch.Generator().manual_seed(1), 1.0)
    assert np.array_equal(a, b) and np.array_equal(batch[0], film)  # seeded, and the input is left alone
    assert a.shape == batch.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert all(not np.array_equal(a[i], film) for i in range(6))
    half = random_acquisition(np.stack([film] * 200), torch.Generator().manual_seed(2), 0.5)
    changed = sum(not np.array_equal(image, film) for image in half)
    assert 70 <= changed <= 130
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_acquisition(batch, torch.Generator(), 1.5)


def test_training_can_draw_from_chosen_acquisition_transforms_only(film):
    # the consistency term's twins can be asked for one look (grain, digitised film); contrast curves are monotone,
    # so a twin drawn from them alone keeps every pixel's order, which grain or text would break
    import torch

    from covidviz.training.augment import random_acquisition
    batch = np.stack([film[::4, ::4]] * 8)
    order = np.argsort(batch[0], axis=None, kind="stable")
    curved = random_acquisition(batch, torch.Generator().manual_seed(3), 1.0, ["contrast_curve"])
    assert all(np.all(np.diff(image.ravel()[order]) >= -1e-6) for image in curved)
    anything = random_acquisition(batch, torch.Generator().manual_seed(3), 1.0)
    assert not all(np.all(np.diff(image.ravel()[order]) >= -1e-6) for image in anything)
    with pytest.raises(ValueError, match="unknown acquisition transform.*grain_noise"):
        random_acquisition(batch, torch.Generator(), 1.0, ["film_grain"])
