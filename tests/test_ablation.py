"""The recipe ablation's figures (paired against the first model) and its model-card table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covidviz import CLASSES
from covidviz.evaluation.artifacts.ablation_artifact import (
    ValidationReading,
    ablation_report,
    extend_ablation,
    flips_against_clean,
    load_ablation,
    write_ablation,
)
from covidviz.evaluation.documents.ablation_facts import ablation_lines
from tests.conftest import WEIGHTS

COVID = CLASSES.index("covid")


def _reading(truth: np.ndarray, right: np.ndarray, energy: float) -> ValidationReading:
    """Probabilities that put 0.8 on the true class where ``right``, else on the next class."""
    guess = np.where(right, truth, (truth + 1) % len(CLASSES))
    probs = np.full((len(truth), len(CLASSES)), 0.1)
    probs[np.arange(len(truth)), guess] = 0.8
    return ValidationReading(probs, np.full(len(truth), energy), (16, 16))


@pytest.fixture
def films():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, len(CLASSES), 600)
    siim = rng.random(600) < 0.5
    return truth, siim, rng


def test_a_better_model_shows_a_positive_paired_difference_and_the_first_row_is_the_reference(films):
    truth, siim, rng = films
    weak = _reading(truth, rng.random(600) < 0.6, 0.45)
    strong = _reading(truth, rng.random(600) < 0.9, 0.70)
    report = ablation_report([({"name": "weak", "source": "a", "architecture": "densenet121", "input_size": 128,
                                "epoch": 3}, weak),
                              ({"name": "strong", "source": "b", "architecture": "densenet121_os16",
                                "input_size": 256, "weights_sha256": "ab" * 32}, strong)],
                             truth, siim, even_share=0.43, n_boot=200)
    first, second = report["rows"]
    assert "vs_first" not in first["macro_f1"]
    gain = second["macro_f1"]["vs_first"]
    assert gain["value"] == pytest.approx(second["macro_f1"]["value"] - first["macro_f1"]["value"])
    assert 0 < gain["ci95"][0] < gain["value"] < gain["ci95"][1]
    assert second["lung_energy_median"]["vs_first"]["value"] == pytest.approx(0.25)
    low, high = second["siim_covid_auc"]["ci95"]
    assert low <= second["siim_covid_auc"]["value"] <= high
    assert report["siim_films"] == int(siim.sum()) and report["films_with_lungs"] == 600


def test_the_same_model_twice_differs_by_exactly_nothing(films):
    truth, siim, rng = films
    reading = _reading(truth, rng.random(600) < 0.7, 0.5)
    meta = {"name": "m", "source": "s", "architecture": "densenet121", "input_size": 128, "epoch": 1}
    report = ablation_report([(meta, reading), (meta, reading)], truth, siim, 0.43, n_boot=100)
    assert report["rows"][1]["macro_f1"]["vs_first"] == {"value": 0.0, "ci95": [0.0, 0.0]}


def test_rows_added_later_equal_one_run_of_every_row_and_need_the_first_row_reproduced(films):
    truth, siim, rng = films
    meta = {"source": "s", "architecture": "densenet121", "input_size": 128, "epoch": 1}
    first, second, third = (_reading(truth, rng.random(600) < p, e) for p, e in ((0.7, 0.5), (0.6, 0.4), (0.8, 0.6)))
    everything = ablation_report([({"name": "a", **meta}, first), ({"name": "b", **meta}, second),
                                  ({"name": "c", **meta}, third)], truth, siim, 0.43, n_boot=100)
    stored = ablation_report([({"name": "a", **meta}, first), ({"name": "b", **meta}, second)], truth, siim, 0.43,
                             n_boot=100)
    fresh = ablation_report([({"name": "a", **meta, "source": "elsewhere"}, first), ({"name": "c", **meta}, third)],
                            truth, siim, 0.43, n_boot=100)
    assert extend_ablation(stored, fresh)["rows"][1:] == everything["rows"][1:]
    # a row of the same name is replaced, not repeated
    assert [r["name"] for r in extend_ablation(everything, fresh)["rows"]] == ["a", "b", "c"]
    moved = ablation_report([({"name": "a", **meta}, second), ({"name": "c", **meta}, third)], truth, siim, 0.43,
                            n_boot=100)
    with pytest.raises(ValueError, match="does not reproduce the stored first row"):
        extend_ablation(stored, moved)
    with pytest.raises(ValueError, match="bootstrap_resamples"):
        extend_ablation(stored, ablation_report([({"name": "a", **meta}, first)], truth, siim, 0.43, n_boot=50))


def test_no_models_is_a_clear_error(films):
    truth, siim, _ = films
    with pytest.raises(ValueError, match="at least one model"):
        ablation_report([], truth, siim, 0.43)


def test_the_card_table_marks_the_shipped_row_and_round_trips_through_the_file(films, tmp_path):
    truth, siim, rng = films
    reading = _reading(truth, rng.random(600) < 0.7, 0.5)
    rows = [({"name": "old", "source": "weights/history/v2", "architecture": "densenet121", "input_size": 128,
              "weights_sha256": "11" * 32}, reading),
            ({"name": "new", "source": "weights", "architecture": "densenet121_os16", "input_size": 256,
              "weights_sha256": "22" * 32,
              "shift": {"films": 300, "seed": 20, "flipped": {"grain_noise": 73, "digitised_film": 80,
                                                               "contrast_curve": 23}}}, reading)]
    rows.append(({**rows[1][0], "name": "new, pooled", "pooling": "lungs"}, reading))
    write_ablation(tmp_path, ablation_report(rows, truth, siim, 0.43, n_boot=50))
    lines = ablation_lines(load_ablation(tmp_path), "22" * 32)
    table = [line for line in lines if line.startswith("| old") or line.startswith("| new")]
    assert len(table) == 3 and "(shipped)" not in table[2] and "; pooled over the lungs" in table[2]
    assert "(shipped)" in table[1] and "(shipped)" not in table[0]
    assert "reference" in table[0] and "densenet121_os16, 256 px, 16 x 16" in table[1]
    assert table[0].endswith("| not measured | not measured | not measured |")
    assert table[1].endswith("| 73 of 300 | 80 of 300 | 176 of 900 (19.6%) |")
    assert ablation_lines(None) == [] and load_ablation(tmp_path / "none") is None


def test_flips_count_films_whose_class_differs_from_the_same_film_read_clean():
    clean = np.array([0, 1, 2, 2, 1])
    flips = flips_against_clean({"clean": clean, "grain_noise": np.array([0, 1, 2, 2, 1]),
                                 "digitised_film": np.array([1, 1, 0, 2, 2])}, "clean", 20)
    assert flips == {"films": 5, "seed": 20, "rule": "argmax", "flipped": {"grain_noise": 0, "digitised_film": 3}}


def test_the_shipped_ablation_measures_every_row_under_the_same_shift_sample():
    report = load_ablation(WEIGHTS)
    if report is None:
        pytest.skip("no ablation shipped")
    samples = {(row["shift"]["films"], row["shift"]["seed"], row["shift"]["rule"]) for row in report["rows"]}
    assert len(samples) == 1, f"rows read different shift samples: {samples}"


def test_the_shipped_ablation_names_the_shipped_model_when_there_is_one():
    report = load_ablation(WEIGHTS)
    if report is None:
        pytest.skip("no ablation shipped")
    from covidviz.verified import read_sidecar
    shipped = read_sidecar(WEIGHTS)["weights_sha256"]
    assert any(row.get("weights_sha256") == shipped for row in report["rows"]), \
        "weights/eval/ablation.json does not measure the shipped model: rerun scripts/recipe_ablation.py"
    assert report["split"] == "val"


def test_lung_cells_dilate_the_mask_to_whole_cells_and_pool_a_film_without_lungs_whole():
    from covidviz.evaluation.artifacts.ablation_artifact import lung_cells
    lungs = np.zeros((2, 256, 256), bool)
    lungs[0, 100:120, 30:40] = True  # rows 100-119 touch cells 6 and 7 of a 16 x 16 grid, columns cell 1 and 2
    cells = lung_cells(lungs, (16, 16))
    assert cells.shape == (2, 16, 16)
    assert {tuple(ix) for ix in np.argwhere(cells[0])} == {(6, 1), (6, 2), (7, 1), (7, 2)}
    assert cells[1].all()


def test_lung_pooling_reads_only_the_lungs():
    """With cells that each see only their own patch, changing the image outside the lungs' cells (keeping its
    histogram, which the per-image standardisation reads) leaves the lung-pooled probabilities alone, and not the
    whole-map ones."""
    import torch

    from covidviz.evaluation.artifacts.ablation_artifact import read_validation

    class Patches(torch.nn.Module):  # a GapClassifier whose every cell reads one 32 px patch
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Conv2d(3, 4, kernel_size=32, stride=32)
            self.classifier = torch.nn.Linear(4, 3)

        def head(self, feature_map):
            return self.classifier(feature_map.relu().mean((2, 3)))

    torch.manual_seed(0)
    model = Patches().eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 256, 256), dtype=np.uint8)
    images[1] = images[0]
    images[1, 200:, :] = images[0, 200:, ::-1]  # mirrored in the last row of cells at 128 px: same histogram
    lungs = np.zeros((2, 256, 256), bool)
    lungs[:, 40:120, 40:200] = True
    found = np.ones(2, bool)
    whole = read_validation(model, images, lungs, found, 128)
    inside = read_validation(model, images, lungs, found, 128, pooling="lungs")
    assert whole.feature_map == (4, 4)
    moved_whole = np.abs(whole.probs[0] - whole.probs[1]).max()
    moved_inside = np.abs(inside.probs[0] - inside.probs[1]).max()
    assert moved_whole > 1e-3 and moved_inside < moved_whole / 100  # what remains: the resize's rounding
    with pytest.raises(ValueError, match="unknown pooling"):
        read_validation(model, images, lungs, found, 128, pooling="box")


def _recipe_ablation():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "recipe_ablation", Path(__file__).resolve().parent.parent / "scripts" / "recipe_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_spec_names_its_source_and_how_it_is_read():
    script = _recipe_ablation()
    assert script.parse_spec("v2=weights") == ("v2", "weights", {"pooling": "image", "low_pass_sigma": None})
    assert script.parse_spec("c=~/runs/os16/best.pt:densenet121_os16:256+lung-pooling+low-pass:0.7") == (
        "c", "~/runs/os16/best.pt:densenet121_os16:256", {"pooling": "lungs", "low_pass_sigma": 0.7})
    with pytest.raises(SystemExit, match="unknown reading option"):
        script.parse_spec("x=weights+sharpen")


def test_the_low_pass_front_end_blurs_and_keeps_the_mean():
    script = _recipe_ablation()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64)).astype(np.uint8)
    blurred = script.low_pass(images, 1.0)
    assert blurred.dtype == np.uint8 and blurred.shape == images.shape
    assert blurred.astype(float).std() < 0.6 * images.astype(float).std()
    assert abs(blurred.astype(float).mean() - images.astype(float).mean()) < 1.0
    assert script.low_pass(images, None) is images


def test_pneumonia_recall_is_counted_per_age_group_and_a_table_read_before_it_takes_it_on(films):
    """Kermany films are the children, the other sources adults; a stored table from before the measure takes new
    rows that have it (its first row, read again, gains it), and the card shows "—" where a row was not read since."""
    truth, siim, rng = films
    sources = np.where(rng.random(600) < 0.5, "Kermany", "NIH")
    reading = _reading(truth, rng.random(600) < 0.7, 0.5)
    meta = {"source": "s", "architecture": "densenet121", "input_size": 128, "epoch": 1}
    fresh = ablation_report([({"name": "a", **meta}, reading), ({"name": "c", **meta}, reading)], truth, siim, 0.43,
                            n_boot=50, sources=sources)
    pneumonia, called = truth == CLASSES.index("pneumonia"), reading.probs.argmax(1) == CLASSES.index("pneumonia")
    for group, from_source in (("adults", "NIH"), ("children", "Kermany")):
        rows = pneumonia & (sources == from_source)
        recall = fresh["rows"][0]["pneumonia_recall"][group]
        assert (recall["recalled"], recall["n"]) == (int((rows & called).sum()), int(rows.sum()))
        assert recall["ci95"][0] <= recall["value"] <= recall["ci95"][1]
    older = ablation_report([({"name": "a", **meta}, reading), ({"name": "b", **meta}, reading)], truth, siim, 0.43,
                            n_boot=50)
    assert "pneumonia_recall" not in older["rows"][0]
    table = extend_ablation(older, fresh)
    assert [("pneumonia_recall" in row) for row in table["rows"]] == [True, False, True]
    lines = [line for line in ablation_lines(table) if line.startswith("| ")][1:]  # after the header
    adults = fresh["rows"][0]["pneumonia_recall"]["adults"]
    assert f"| {adults['recalled']} of {adults['n']} |" in lines[0] and "| — | — |" in lines[1]


def _patches(seed: int, kernel: int = 32):
    """A GapClassifier whose every cell reads one ``kernel`` px patch, seeded."""
    import torch

    class Patches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Conv2d(3, 4, kernel_size=kernel, stride=kernel)
            self.classifier = torch.nn.Linear(4, 3)

        def head(self, feature_map):
            return self.classifier(feature_map.relu().mean((2, 3)))

    torch.manual_seed(seed)
    return Patches().eval()


def test_an_ensemble_reads_its_members_mean_probabilities_and_their_unit_maps():
    from covidviz.evaluation.artifacts.ablation_artifact import read_validation
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (5, 256, 256), dtype=np.uint8)
    lungs = np.zeros((5, 256, 256), bool)
    lungs[:, 40:200, 30:120] = True
    found = np.array([True, True, True, True, False])
    a, b = _patches(0), _patches(1)
    alone_a, alone_b = read_validation(a, images, lungs, found, 128), read_validation(b, images, lungs, found, 128)
    both = read_validation([a, b], images, lungs, found, 128)
    assert np.allclose(both.probs, (alone_a.probs + alone_b.probs) / 2, atol=1e-6)
    assert not np.allclose(alone_a.probs, alone_b.probs, atol=1e-3)
    twice = read_validation([a, a], images, lungs, found, 128)  # a model with itself is the model
    assert np.allclose(twice.probs, alone_a.probs, atol=1e-6)
    assert np.allclose(twice.lung_energy, alone_a.lung_energy, equal_nan=True)
    assert np.isnan(both.lung_energy[4]) and np.isfinite(both.lung_energy[:4]).all()
    assert both.feature_map == (4, 4)
    with pytest.raises(ValueError, match="one grid"):
        read_validation([a, _patches(2, kernel=64)], images, lungs, found, 128)


def test_an_ensemble_spec_loads_its_members_keys_its_cache_apart_and_refuses_mixed_sizes():
    script = _recipe_ablation()
    history = sorted((WEIGHTS / "history").glob("v*"))[-1]
    meta, models, size = script.load_ensemble(f"{WEIGHTS}&{history}")
    assert isinstance(models, list) and len(models) == 2 and size == 128
    assert [m["weights_sha256"] for m in meta["members"]] != [meta["members"][0]["weights_sha256"]] * 2
    films = ["a.png"]
    reading = {"pooling": "image", "low_pass_sigma": None}
    keys = {script.row_key(str(WEIGHTS), reading, films), script.row_key(str(history), reading, films),
            script.row_key(f"{WEIGHTS}&{history}", reading, films), script.row_key(f"{history}&{WEIGHTS}", reading,
                                                                                     films)}
    assert len(keys) == 4
    with pytest.raises(SystemExit, match="different input sizes"):
        script.load_ensemble(f"{WEIGHTS}&{WEIGHTS / 'comparison' / 'densenet121_os16'}")


def test_the_card_names_an_ensembles_members_a_weight_average_and_a_head_refit(films):
    truth, siim, rng = films
    reading = _reading(truth, rng.random(600) < 0.8, 0.6)
    members = [{"source": "weights", "weights_sha256": "cd" * 32}, {"source": "adult/best.pt", "epoch": 4}]
    report = ablation_report([({"name": "one", "source": "weights", "architecture": "densenet121", "input_size": 128,
                                "weights_sha256": "cd" * 32}, reading),
                              ({"name": "both", "source": "weights & adult/best.pt", "architecture": "densenet121",
                                "input_size": 128, "members": members}, reading),
                              ({"name": "soup", "source": "soup/best.pt", "architecture": "densenet121",
                                "input_size": 128, "epoch": None, "averaged": 2}, reading),
                              ({"name": "head", "source": "head/best.pt", "architecture": "densenet121",
                                "input_size": 128, "epoch": None, "made_by": "head refit"}, reading)],
                             truth, siim, even_share=0.43, n_boot=50)
    table = "\n".join(ablation_lines(report))
    assert "`weights & adult/best.pt`, `cdcdcdcdcdcd` & epoch 4" in table
    assert "ensemble of 2 (2 forward passes a film)" in table
    assert "`soup/best.pt`, weight average of 2" in table
    assert "`head/best.pt`, head refit" in table and "`?`" not in table
    assert table.count("forward passes") == 1


def test_a_view_crops_and_mirrors_the_field_and_carries_its_map_back_where_it_was_drawn():
    from covidviz.evaluation.artifacts.ablation_artifact import TestTimeView
    from covidviz.lungs.field import map_on_grid
    field = np.arange(2 * 100 * 100).reshape(2, 100, 100)
    crop = TestTimeView(top=0.1, left=0.05, side=0.9)
    assert np.array_equal(crop.apply(field), field[:, 10:100, 5:95])
    assert np.array_equal(TestTimeView(mirror=True).apply(field), field[:, :, ::-1])
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0] = 1.0  # the view's top-left cell
    assert np.array_equal(TestTimeView().back(cam, (100, 100)), map_on_grid(cam, (100, 100)))
    mirrored = TestTimeView(mirror=True).back(cam, (100, 100))
    assert mirrored[:, 75:].sum() > 0 and mirrored[:, :50].sum() == 0  # drawn top-left on the mirror: top-right
    placed = crop.back(cam, (100, 100))
    assert placed[:10].sum() == 0 and placed[:, :5].sum() == 0 and placed[10:35, 5:30].sum() > 0


def test_test_time_views_average_the_passes_and_crops_refuse_lung_pooling():
    from covidviz.evaluation.artifacts.ablation_artifact import TEST_TIME_VIEWS, TestTimeView, read_validation
    rng = np.random.default_rng(4)
    images = rng.integers(0, 255, (3, 256, 256), dtype=np.uint8)
    lungs = np.zeros((3, 256, 256), bool)
    lungs[:, 40:200, 30:120] = True
    found = np.ones(3, bool)
    model = _patches(0)
    plain = read_validation(model, images, lungs, found, 128)
    assert np.array_equal(read_validation(model, images, lungs, found, 128, views=(TestTimeView(),)).probs, plain.probs)
    mirror = read_validation(model, images[:, :, ::-1].copy(), lungs[:, :, ::-1].copy(), found, 128)
    both = read_validation(model, images, lungs, found, 128, views=TEST_TIME_VIEWS["flip"])
    assert np.allclose(both.probs, (plain.probs + mirror.probs) / 2, atol=1e-6)
    crops = read_validation(model, images, lungs, found, 128, views=TEST_TIME_VIEWS["crops"])
    assert crops.probs.shape == plain.probs.shape and np.isfinite(crops.lung_energy).all()
    with pytest.raises(ValueError, match="crop views"):
        read_validation(model, images, lungs, found, 128, pooling="lungs", views=TEST_TIME_VIEWS["crops"])


def test_a_spec_asks_for_test_time_views_and_the_card_counts_the_passes(films):
    script = _recipe_ablation()
    assert script.parse_spec("t=weights+views:flip") == (
        "t", "weights", {"pooling": "image", "low_pass_sigma": None, "views": "flip"})
    with pytest.raises(SystemExit, match=r"\+views:flip\|crops"):
        script.parse_spec("t=weights+views:rotate")
    truth, siim, rng = films
    reading = _reading(truth, rng.random(600) < 0.8, 0.6)
    base = {"source": "weights", "architecture": "densenet121", "input_size": 128, "weights_sha256": "cd" * 32}
    report = ablation_report([({"name": "one", **base}, reading),
                              ({"name": "crops", **base, "views": "crops", "view_passes": 6}, reading),
                              ({"name": "two and mirrors", **base, "members": [base, base], "views": "flip",
                                "view_passes": 2}, reading)], truth, siim, even_share=0.43, n_boot=50)
    table = "\n".join(ablation_lines(report, shipped_sha256="cd" * 32))
    assert "; test-time views: the field and five crops of 0.9 (6 forward passes a film)" in table
    assert table.count("**(shipped)**") == 1 and "| one **(shipped)**" in table  # read otherwise, not as shipped
    assert "; ensemble of 2; test-time views: the field and its mirror (4 forward passes a film)" in table


def test_a_refitted_head_folds_its_standardisation_into_one_linear_layer():
    """scripts/refit_head.py writes one linear layer; it must give the fitted pipeline's logits exactly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from scripts.refit_head import folded_head
    rng = np.random.default_rng(0)
    features = rng.gamma(2.0, 1.0, (120, 16)) * rng.uniform(0.1, 10, 16)
    labels = rng.integers(0, 3, 120)
    fitted = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(features, labels)
    weight, bias = folded_head(fitted[0].mean_, fitted[0].scale_, fitted[1].coef_, fitted[1].intercept_)
    np.testing.assert_allclose(features @ weight.T + bias, fitted.decision_function(features), rtol=1e-9, atol=1e-9)


def test_a_refitted_head_refined_for_the_lungs_moves_its_maps_inside_them_and_keeps_its_answers():
    """scripts/refit_head.py --outside-lungs: at weight 0 the refinement is the fitted head (the same loss, at its
    minimum); with the penalty, a head that read a class from a cue inside the lungs and the same cue outside
    them leans on the cue inside, its maps move inside, and it still tells the classes apart."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from covidviz.training.lung_attention import gradcam_energy, outside_lung_share
    from scripts.refit_head import folded_head, refine_head
    rng = np.random.default_rng(0)
    n, channels = 300, 6
    labels = rng.integers(0, 3, n)
    maps = rng.normal(0, 0.3, (n, channels, 4, 4)).astype(np.float32)
    lungs = np.zeros((n, 4, 4), np.float32)
    lungs[:, :, :2] = 1  # the lungs: the left half of every map
    for cls in range(3):
        films = labels == cls
        maps[films, cls, :, :2] += 1.0  # the class's cue inside the lungs
        maps[films, 3 + cls, :, 2:] += 1.0  # and the same cue outside them
    pooled = np.maximum(maps, 0).mean((2, 3))
    c = 0.1
    fitted = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
                           ).fit(pooled, labels)
    weight, bias = folded_head(fitted[0].mean_, fitted[0].scale_, fitted[1].coef_, fitted[1].intercept_)
    balanced = (n / (3 * np.bincount(labels, minlength=3)))[labels]
    kept, kept_bias, _ = refine_head(weight, bias, pooled, labels, balanced, fitted[0].scale_, c, maps, lungs, 0.0)
    np.testing.assert_allclose(pooled @ kept.T + kept_bias, pooled @ weight.T + bias, atol=1e-2)

    refined, refined_bias, trace = refine_head(weight, bias, pooled, labels, balanced, fitted[0].scale_, c, maps,
                                               lungs, 1.0)

    def outside(w: np.ndarray) -> float:
        return float(outside_lung_share(gradcam_energy(torch.from_numpy(maps), torch.from_numpy(w)),
                                        torch.from_numpy(lungs)[:, None]))
    assert outside(weight) > 0.35 and outside(refined) < outside(weight) - 0.15, (outside(weight), outside(refined))
    assert trace["outside"] == pytest.approx(outside(refined), abs=1e-4)
    assert ((pooled @ refined.T + refined_bias).argmax(1) == labels).mean() > 0.95
