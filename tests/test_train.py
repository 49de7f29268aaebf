"""A short real training run: checkpoints every epoch, resumes exactly, exports verified weights,
and evaluation writes the artifacts the dashboard reads."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from covidviz import CLASSES
from covidviz.evaluation.artifacts.evaluate import evaluate
from covidviz.model.weights import load_weights
from covidviz.training.config import TrainConfig
from covidviz.training.train import sample_weights, train
from tests.conftest import WEIGHTS
from tests.toy_data import make_toy_collection

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_collection(tmp_path_factory.mktemp("cxr"))


def _config(toy, run, **kw):
    settings = dict(size=64, epochs=3, batch_size=8, lr=1e-3, fast=False) | kw
    return TrainConfig(data_dir=str(toy), run_dir=str(run), **settings)


@pytest.mark.parametrize("recipe", [{"acquisition": 0.5, "adult_pneumonia": 0.75},
                                    {"acquisition": 0.5, "consistency": 4.0},
                                    {"acquisition": 0.5, "outside_lungs": 0.3, "segmenter_dir": str(WEIGHTS)},
                                    {"acquisition": 0.5, "outside_lungs": 0.3, "segmenter_dir": str(WEIGHTS),
                                     "consistency": 4.0, "twin_transforms": ("grain_noise", "digitised_film")}],
                         ids=["acquisition-adult-pneumonia", "acquisition-consistency", "acquisition-outside-lungs",
                              "outside-lungs-and-grain-consistency"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(toy, tmp_path, recipe):
    # with acquisition augmentation on (and the twins of the consistency term), so their random draws are part of
    # what must resume exactly
    train(_config(toy, tmp_path / "straight", **recipe))
    train(_config(toy, tmp_path / "resumed", stop_after=1, **recipe))
    first = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert json.loads(first["progress"])["epoch"] == 1
    train(_config(toy, tmp_path / "resumed", **recipe), resume=True)
    stage = torch.load(tmp_path / "resumed" / "best.pt", weights_only=True)["stages"][-1]
    assert stage["consistency"] == recipe.get("consistency", 0.0)
    assert stage["outside_lungs"] == recipe.get("outside_lungs", 0.0)
    assert tuple(stage["twin_transforms"]) == recipe.get("twin_transforms", ())
    assert stage["adult_pneumonia"] == recipe.get("adult_pneumonia")
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-5), name
    history = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # pneumonia recall for adults (NIH) and children (Kermany) apart, each [recalled, films] on validation
    p = CLASSES.index("pneumonia")
    for h in history:
        groups = h["pneumonia_recall"]
        assert set(groups) <= {"adults", "children"} and sum(h["confusion"][p]) > 0
        assert [sum(k for k, _ in groups.values()), sum(n for _, n in groups.values())] == \
            [h["confusion"][p][p], sum(h["confusion"][p])]
    if recipe.get("outside_lungs"):  # the penalty's share is logged, with or without the twins
        assert all(0 < h["train_outside_share"] < 1 for h in history)


def test_the_lung_penalty_and_the_twins_say_what_they_need(toy, tmp_path):
    with pytest.raises(ValueError, match="needs lung masks"):
        train(_config(toy, tmp_path / "whole", outside_lungs=0.3))
    with pytest.raises(ValueError, match="needs --consistency"):
        train(_config(toy, tmp_path / "twins", twin_transforms=("grain_noise",)))
    with pytest.raises(ValueError, match="unknown acquisition transform"):
        train(_config(toy, tmp_path / "grain", consistency=4.0, twin_transforms=("grain",)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        train(_config(toy, tmp_path / "adults", adult_pneumonia=1.0))


def test_export_then_evaluate_writes_dashboard_artifacts(toy, tmp_path):
    weights = tmp_path / "weights"
    train(_config(toy, tmp_path / "run", export_dir=str(weights)))
    model, sidecar = load_weights(weights)
    assert sidecar["input_size"] == 64 and sidecar["initialisation"].startswith("random")
    assert "external" not in json.dumps(sidecar["data"]["counts"]) and "Hannover" in json.dumps(sidecar["data"]["counts"])
    report = evaluate(toy, weights, n_boot=20)
    assert set(report["splits"]) == {"val", "test", "external"}
    with (weights / "eval" / "external_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "source", "true", "p_covid", "p_pneumonia", "p_normal"]
    assert all(r["file"].startswith("external/") and r["true"] == "covid" for r in rows)
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    metrics = json.loads((weights / "eval" / "metrics.json").read_text())
    assert metrics["weights_sha256"] == sidecar["weights_sha256"]
    energy, even = metrics["reads_the_lungs"]["lung_energy"], metrics["reads_the_lungs"]["lung_area_share"]
    assert set(even) == set(energy) == {"val", "test", "external"}  # the even spread over the same films' masks
    assert all(even[s]["n_with_lungs"] == energy[s]["n_with_lungs"] and even[s]["n"] == energy[s]["n"] for s in even)
    calibration = metrics["splits"]["val"]["calibration"]
    assert calibration["after"]["ece"] is not None and calibration["before"]["brier"] is not None
    card = (weights / "MODEL_CARD.md").read_text()
    assert sidecar["weights_sha256"] in card and "random (no pretrained weights)" in card
    assert "external (Hannover COVID-19, Shenzhen normals)" in card and "Source confounding" in card
    _, after = load_weights(weights)  # the temperature lands in the sidecar; the weights hash still verifies
    assert after["temperature"] == pytest.approx(metrics["temperature"])


def test_init_from_an_earlier_model_keeps_its_recipe(toy, tmp_path):
    weights = tmp_path / "w1"
    train(_config(toy, tmp_path / "a", export_dir=str(weights), epochs=1))
    train(_config(toy, tmp_path / "b", export_dir=str(tmp_path / "w2"), epochs=1, init=str(weights)))
    _, sidecar = load_weights(tmp_path / "w2")
    assert [s["stage"] for s in sidecar["training"]["stages"]] == ["64px", "64px"]


def test_a_checkpoint_made_without_epochs_exports_as_it_stands(toy, tmp_path):
    from covidviz.model.provenance import WEIGHT_AVERAGE
    from covidviz.tools.cli import main
    from covidviz.training.export import export_checkpoint
    from covidviz.training.weight_average import write_average
    best = train(_config(toy, tmp_path / "a", epochs=1))
    soup = write_average([best, best], tmp_path / "soup" / "best.pt")
    assert main(["train", "--data", str(toy), "--run", str(soup.parent), "--size", "64", "--precision", "fp32",
                 "--export", str(tmp_path / "w"), "--export-only"]) == 0
    assert not (soup.parent / "last.pt").exists()  # nothing was trained
    model, sidecar = load_weights(tmp_path / "w")
    averaged = torch.load(soup, weights_only=True)["model"]
    assert all(torch.equal(value, (averaged[key].half() if value.is_floating_point() else averaged[key]).to(value.dtype))
               for key, value in model.state_dict().items())  # shipped weights are stored in fp16
    assert [s["stage"] for s in sidecar["training"]["stages"]] == ["64px", WEIGHT_AVERAGE]
    assert sidecar["training"]["best_epoch"] is None
    assert any("without training" in note for note in sidecar["training"]["notes"])
    from covidviz.evaluation.documents.facts import model_line
    from covidviz.evaluation.documents.model_card import render_model_card
    stages_line = next(line for line in render_model_card(sidecar, None).splitlines() if line.startswith("- Stages:"))
    for text in (stages_line, model_line(sidecar)):
        assert "weight average of 2 fine-tunes" in text and "None" not in text
    with pytest.raises(ValueError, match="no .*best.pt to export"):
        export_checkpoint(_config(toy, tmp_path / "empty", export_dir=str(tmp_path / "w2")))
    with pytest.raises(ValueError, match="--export"):
        export_checkpoint(_config(toy, soup.parent))


def test_sampling_balances_classes_and_dampens_big_sources():
    from covidviz.data.collection import Record
    recs = ([Record(f"a{i}", "covid", f"a{i}", "X", "pool", False) for i in range(10)]
            + [Record(f"b{i}", "normal", f"b{i}", "Y", "pool", False) for i in range(90)]
            + [Record(f"c{i}", "normal", f"c{i}", "Z", "pool", False) for i in range(10)])
    w = sample_weights(recs)
    assert w[:10].sum() == pytest.approx(0.5)  # each class half the draws
    assert w[10:100].sum() / w[100:].sum() == pytest.approx(3.0)  # sqrt(90) / sqrt(10)


def test_adult_pneumonia_gets_the_share_of_its_class_it_is_given():
    """Kermany (children) 100 films, NIH 36 and ieee8023 4 (adults): by size the children take sqrt(100) of
    sqrt(100) + sqrt(36) + sqrt(4) = 10 / 18 of the pneumonia draws; asked for 0.75, the adults take 0.75,
    split 6 : 2 between their sources; the other classes do not move."""
    from covidviz.data.collection import Record
    def films(label, source, n):
        return [Record(f"{source}{label}{i}", label, f"{source}{label}{i}", source, "pool", False) for i in range(n)]
    recs = (films("pneumonia", "Kermany", 100) + films("pneumonia", "NIH", 36) + films("pneumonia", "ieee8023", 4)
            + films("normal", "NIH", 50))
    kermany, nih, ieee, normal = slice(0, 100), slice(100, 136), slice(136, 140), slice(140, 190)
    by_size = sample_weights(recs)
    assert by_size[kermany].sum() == pytest.approx(0.5 * 10 / 18)
    asked = sample_weights(recs, adult_pneumonia=0.75)
    assert asked[nih].sum() + asked[ieee].sum() == pytest.approx(0.5 * 0.75)
    assert asked[nih].sum() / asked[ieee].sum() == pytest.approx(3.0)
    assert asked[kermany].sum() == pytest.approx(0.5 * 0.25) and asked[normal].sum() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="adult and paediatric pneumonia films"):
        sample_weights(films("pneumonia", "NIH", 5) + films("normal", "NIH", 5), adult_pneumonia=0.75)


def test_a_config_from_a_recipe_trains_by_every_field_the_recipe_names():
    from covidviz.training.recipes import Recipe
    recipe = Recipe(name="odd recipe", size=96, epochs=3, epoch_images=48, batch_size=6, lr=0.02, weight_decay=0.3,
                    label_smoothing=0.2, seed=7)
    cfg = TrainConfig.from_recipe(recipe, data_dir="data", run_dir="run", arch="small_cnn")
    assert (cfg.size, cfg.epochs, cfg.epoch_images, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.label_smoothing,
            cfg.seed) == (96, 3, 48, 6, 0.02, 0.3, 0.2, 7)
    assert cfg.recipe == "odd recipe" and cfg.patience == 3 and cfg.arch == "small_cnn" and cfg.run_dir == "run"
