"""Lung-field geometry (pure, with hand-made masks as oracles) and the shipped lung segmenter on real films."""

from __future__ import annotations

import numpy as np
import pytest

from covidviz.lungs.field import (
    check_lungs,
    check_texture,
    confidence_floor,
    field_box,
    flat_limit,
    flat_share,
    lung_energy,
)
from covidviz.model.preprocessing import CANONICAL_SIZE, CropBox, lung_field_image, mask_in_box
from tests.conftest import FIXTURES, WEIGHTS, fixture_rows


def two_lungs(shape=(256, 256), rows=(60, 200), left=(40, 110), right=(146, 216)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], left[0]:left[1]] = True
    mask[rows[0]:rows[1], right[0]:right[1]] = True
    return mask


def test_a_pair_of_lungs_side_by_side_is_plausible():
    check = check_lungs(two_lungs())
    assert check.plausible and check.lung_share == pytest.approx(2 * 140 * 70 / 256 ** 2)


@pytest.mark.parametrize("mask, words", [
    (np.zeros((256, 256), bool), "only 0%"),
    (np.ones((256, 256), bool), "100% of the image"),
    (two_lungs(left=(40, 110), right=(20, 39)), "two lungs side by side"),  # both left of the midline
])
def test_implausible_masks_say_why(mask, words):
    check = check_lungs(mask)
    assert not check.plausible and words in check.reason


def test_a_hesitant_pair_is_not_plausible_yet_still_read_as_a_field():
    """The segmenter marks a pair where it should, at 0.7 (an edge of 0.6 around it stays below 0.5): geometry
    passes, a floor of 0.9 does not; the field is still cropped, so the floor changes no input the model reads."""
    probability = two_lungs().astype(np.float32) * 0.7
    probability[50:60, 30:220] = 0.4  # below 0.5: outside the mask, so it must not pull the confidence down
    assert check_lungs(probability).plausible and check_lungs(probability).confidence == pytest.approx(0.7)
    check = check_lungs(probability, min_confidence=0.9)
    assert not check.plausible and check.paired and check.confidence == pytest.approx(0.7)
    assert "unsure" in check.reason and "0.700" in check.reason and "0.900" in check.reason
    assert check_lungs(two_lungs(), min_confidence=0.9).plausible  # a binary mask is fully confident
    gray = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    hesitant, sure = lung_field_image(gray, probability, min_confidence=0.9), lung_field_image(gray, probability)
    assert hesitant.lung_field and hesitant.lungs_found and not hesitant.lungs_plausible
    assert sure.lungs_plausible
    np.testing.assert_array_equal(hesitant.image, sure.image)


def test_flat_share_counts_the_lungs_without_texture():
    """Noise of one grey level's spread is texture; a blank page is not. Half a lung blank is about half flat (the
    5 x 5 window blurs the seam by two pixels on each side)."""
    rng = np.random.default_rng(0)
    lungs = two_lungs()
    noise = (0.5 + rng.normal(0, 2 / 256, (256, 256))).astype(np.float32)
    blank = np.full((256, 256), 0.2, np.float32)
    half = noise.copy()
    half[:130] = 0.2  # rows 60..129 of 60..199 blank: 70 of 140
    assert flat_share(noise, lungs) < 0.01 and flat_share(blank, lungs) == 1.0
    assert flat_share(half, lungs) == pytest.approx(70 / 140, abs=3 / 140)
    assert flat_share(blank, np.zeros((256, 256), bool)) != flat_share(blank, np.zeros((256, 256), bool))  # NaN


def test_flat_lungs_are_not_plausible_and_the_limit_is_the_flattest_validation_film():
    plausible = check_lungs(two_lungs())
    kept = check_texture(plausible, 0.1, 0.2)
    assert kept.plausible and kept.flat == 0.1
    refused = check_texture(plausible, 0.88, 0.2)
    assert not refused.plausible and refused.paired and refused.flat == 0.88
    assert "88% of the lungs" in refused.reason and "20.0%" in refused.reason
    assert check_texture(plausible, 0.88, None).plausible  # no limit fitted: recorded, not judged
    hesitant = check_lungs(two_lungs().astype(np.float32) * 0.7, min_confidence=0.9)
    assert check_texture(hesitant, 0.88, 0.2).reason == hesitant.reason  # the first reason stands
    assert flat_limit(np.array([0.1, np.nan, 0.19301])) == 0.194  # rounded up, never down
    with pytest.raises(ValueError, match="no validation film has a pair of lungs"):
        flat_limit(np.array([np.nan]))


def test_a_blank_field_with_a_pair_of_lungs_gets_no_class_but_the_same_field():
    """The limit is judged on the field the model reads, and like the floor it changes nothing in that field."""
    lungs = two_lungs().astype(np.float32)
    blank = np.full((300, 300), 0.3, np.float32)
    blank[:, 140:160] = 0.9  # a bright stripe down the middle: something to stretch
    refused, free = lung_field_image(blank, lungs, max_flat=0.2), lung_field_image(blank, lungs)
    assert refused.lungs_found and not refused.lungs_plausible and refused.check.flat > 0.9
    assert free.lungs_plausible and free.check.flat == refused.check.flat
    np.testing.assert_array_equal(refused.image, free.image)
    noisy = blank + np.random.default_rng(0).normal(0, 0.02, blank.shape).astype(np.float32)
    assert lung_field_image(noisy, lungs, max_flat=0.2).lungs_plausible


def test_the_floor_is_the_least_confidence_among_validation_films_with_a_pair():
    hesitant = two_lungs().astype(np.float32) * 0.8
    no_pair = np.zeros((256, 256), np.float32)
    checks = [check_lungs(p) for p in (two_lungs().astype(np.float32), hesitant, no_pair)]
    values = np.array([c.confidence if c.paired else np.nan for c in checks])
    assert values[:2] == pytest.approx([1.0, 0.8]) and np.isnan(values[2])
    assert confidence_floor(values) == pytest.approx(0.8)  # the film without a pair does not set it
    assert confidence_floor(np.array([0.88749, 0.9])) == 0.887  # rounded down, never up
    with pytest.raises(ValueError, match="no validation film has a pair of lungs"):
        confidence_floor(np.array([np.nan]))


def test_field_box_widens_the_lungs_box_by_the_margin_and_scales_to_the_original():
    # lungs span rows 60..199 and columns 40..215 of a 256 grid laid over a 512 x 1024 (h x w) original
    top, left, height, width = field_box(two_lungs(), (512, 1024), margin=0.1)
    assert (top, height) == (120 - 28, 280 + 56)          # rows 120..400 in the original, +-10% of 280
    assert (left, width) == (160 - 71, 704 + 142)         # floor(160 - 70.4), ceil(864 + 70.4)


def test_field_box_is_clipped_and_an_empty_mask_means_the_whole_image():
    mask = np.zeros((256, 256), bool)
    mask[0:256, 0:128] = True  # the left half, full height: the 8% margin is clipped at top, bottom and left
    assert field_box(mask, (100, 100)) == (0, 0, 100, 54)  # columns 0..50, + 4 on the right
    assert field_box(np.zeros((256, 256), bool), (300, 200)) == (0, 0, 300, 200)


def test_lung_energy_is_the_share_of_the_map_inside_the_mask():
    mask = np.zeros((256, 256), bool)
    mask[64:192, 32:96] = True  # 1/8 of the image
    assert lung_energy(np.ones((4, 4)), mask) == pytest.approx(1 / 8)  # a flat map spreads evenly
    inside = np.zeros((256, 256))
    inside[64:192, 32:96] = 2.0
    assert lung_energy(inside, mask) == pytest.approx(1.0)  # a map at the mask's size, all inside
    half = np.zeros((256, 256))
    half[64:192, 32:96], half[0:128, 160:224] = 1.0, 1.0  # equal energy inside and outside
    assert lung_energy(half, mask) == pytest.approx(0.5)
    assert np.isnan(lung_energy(np.zeros((8, 8)), mask))


def test_mask_in_box_follows_the_crop():
    probability = np.zeros((256, 256), np.float32)
    probability[128:, :] = 1.0  # lower half of a 400 x 400 original
    box = CropBox(top=100.0, left=0.0, height=200.0, width=400.0)  # rows 100..300: the cut at row 200 is mid-box
    mask = mask_in_box(probability, (400, 400), box)
    assert mask.shape == (CANONICAL_SIZE, CANONICAL_SIZE)
    assert not mask[:120].any() and mask[136:].all()


def test_lung_field_image_crops_to_the_lungs_and_falls_back_without_them():
    gray = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    prepared = lung_field_image(gray, two_lungs().astype(np.float32))
    assert prepared.lung_field and prepared.image.shape == (256, 256)
    assert prepared.box.height < 512 and prepared.box.width < 512
    assert prepared.lungs.mean() > 0.5  # the lungs fill most of their own field
    fallback = lung_field_image(gray, np.zeros((256, 256), np.float32))
    assert not fallback.lung_field and fallback.box.covers((512, 512))


requires_segmenter = pytest.mark.skipif(not (WEIGHTS / "lungs" / "model.json").is_file(),
                                        reason="weights/lungs is not shipped yet")


@requires_segmenter
def test_shipped_segmenter_verifies_and_finds_lungs_on_every_chest_fixture():
    from covidviz.io.loading import load_xray_file
    from covidviz.lungs.segmenter import load_segmenter
    segmenter = load_segmenter(WEIGHTS)
    rows = [r for r in fixture_rows() if r.get("kind", "chest") == "chest"]
    masks = segmenter.masks([load_xray_file(FIXTURES / r["fixture"]).pixels for r in rows])
    checks = [check_lungs(m) for m in masks]
    assert all(c.plausible for c in checks), [(r["fixture"], c.reason) for r, c in zip(rows, checks)]
    assert segmenter.sidecar["test"]["dice_mean"] >= 0.9


@requires_segmenter
def test_segmenter_finds_no_lungs_in_pictures_that_are_not_chest_x_rays():
    from covidviz.data.ood_sets import skimage_pictures
    from covidviz.lungs.segmenter import load_segmenter
    pictures = skimage_pictures()
    masks = load_segmenter(WEIGHTS).masks([p.pixels for p in pictures.values()])
    flagged = sum(not check_lungs(m).plausible for m in masks)
    assert flagged >= 0.5 * len(masks), f"only {flagged} of {len(masks)} non-chest pictures lack lungs"


@pytest.mark.slow
def test_segmenter_training_exports_verified_weights_with_held_out_scores(tmp_path):
    """A two-epoch run on a tiny lungs/ folder (real films, rectangle masks): checkpoints, export, verified load."""
    import csv

    from PIL import Image

    from covidviz.lungs.segmenter import load_segmenter
    from covidviz.training.lungs import LungTrainConfig, train_lungs
    data = tmp_path / "cxr"
    (data / "lungs" / "images").mkdir(parents=True)
    (data / "lungs" / "masks").mkdir(parents=True)
    (data / "metadata.csv").write_text("file,class,split_group,source_dataset,set,demo_shippable,rsna_label\n")
    rows = []
    for i, row in enumerate(fixture_rows()[:12]):
        name = f"lungs/images/{i}.png"
        Image.open(FIXTURES / row["fixture"]).convert("L").save(data / name)
        Image.fromarray((two_lungs() * 255).astype(np.uint8)).save(data / name.replace("images", "masks"))
        rows.append({"image": name, "mask": name.replace("images", "masks"), "source": "toy", "license": "",
                     "class_if_known": "", "mask_fraction": "", "shared_file": ""})
    with (data / "lungs" / "lungs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = LungTrainConfig(str(data), str(tmp_path / "run"), epochs=2, batch_size=4, threads=1,
                          export_dir=str(tmp_path / "w"), acquisition=0.5)
    sidecar = train_lungs(cfg)
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
    assert [h["epoch"] for h in sidecar["training"]["history"]] == [1, 2]
    assert sidecar["test"]["n"] == sidecar["data"]["test"] and 0.0 <= sidecar["test"]["dice_mean"] <= 1.0
    from covidviz.data.acquisition import TRANSFORMS
    assert sidecar["training"]["acquisition"] == 0.5 and "50% of films through" in sidecar["training"]["augmentation"]
    under = sidecar["test"]["dice_under_acquisition"]
    assert set(under) == set(TRANSFORMS) and all(0.0 <= dice <= 1.0 for dice in under.values())
    segmenter = load_segmenter(tmp_path / "w")
    from covidviz.verified import sha256_of
    assert segmenter.sha256 == sha256_of(tmp_path / "w" / "lungs" / "model.safetensors")
    assert segmenter.masks([np.random.default_rng(0).random((300, 200)).astype(np.float32)]).shape == (1, 256, 256)


def test_whole_image_form_can_still_carry_the_lungs_for_measurement():
    from covidviz.model.preprocessing import canonical_with_box, prepare

    class FixedLungs:  # stands for the segmenter's output: the same two lungs for every image
        min_confidence = None
        max_flat = None

        def probabilities(self, grays, batch_size=16):
            return np.stack([two_lungs().astype(np.float32)] * len(grays))

    gray = np.random.default_rng(1).random((300, 300)).astype(np.float32)
    whole = prepare([gray], FixedLungs(), crop=False)[0]
    image, box = canonical_with_box(gray)
    np.testing.assert_array_equal(whole.image, image)  # what the whole-image model reads is unchanged
    assert whole.lungs_found and not whole.lung_field and whole.lungs.mean() == pytest.approx(
        two_lungs().mean(), abs=0.01)
    field = prepare([gray], FixedLungs())[0]
    assert field.lung_field and field.lungs.mean() > whole.lungs.mean()
