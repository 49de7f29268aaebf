"""Weight averaging (a model soup): the average of fine-tunes, written as a run checkpoint that says how it was
made, from checkpoints and shipped weights folders alike."""

from __future__ import annotations

import pytest
import torch

from covidviz.model.provenance import HEAD_REFIT, WEIGHT_AVERAGE, stage_text
from covidviz.training.checkpoint import load_init
from covidviz.training.weight_average import average_states, write_average
from tests.conftest import WEIGHTS


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    net[1].running_mean.uniform_()
    net[1].num_batches_tracked.fill_(seed * 10)
    return net


def test_the_average_is_the_share_weighted_mean_and_keeps_the_largest_batch_count():
    a, b = _net(1).state_dict(), _net(2).state_dict()
    mean = average_states([a, b])
    assert torch.allclose(mean["0.weight"], (a["0.weight"] + b["0.weight"]) / 2)
    assert torch.allclose(mean["1.running_mean"], (a["1.running_mean"] + b["1.running_mean"]) / 2)
    assert mean["1.num_batches_tracked"].item() == 20 and mean["1.num_batches_tracked"].dtype == torch.int64
    tilted = average_states([a, b], shares=[3, 1])
    assert torch.allclose(tilted["0.bias"], 0.75 * a["0.bias"] + 0.25 * b["0.bias"])


def test_what_cannot_be_averaged_is_a_clear_error():
    a = _net(1).state_dict()
    with pytest.raises(ValueError, match="at least two"):
        average_states([a])
    with pytest.raises(ValueError, match="one positive share per model"):
        average_states([a, a], shares=[1, 0])
    with pytest.raises(ValueError, match="one positive share per model"):
        average_states([a, a], shares=[1])
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3)).state_dict()
    with pytest.raises(ValueError, match="shape of 0.weight"):
        average_states([a, other])
    with pytest.raises(ValueError, match="other tensors"):
        average_states([a, torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).state_dict()])


def test_the_written_average_is_a_run_checkpoint_whose_stages_say_how_it_was_made(tmp_path):
    shared = [{"stage": "128px", "lr": 1e-3, "twin_transforms": []}]
    runs = []
    for seed, own in ((1, {"stage": "fine-tune", "adult_pneumonia": 0.6}), (2, {"stage": "fine-tune", "lr": 1e-4})):
        path = tmp_path / f"run{seed}" / "best.pt"
        path.parent.mkdir()
        stages = [{**shared[0], "twin_transforms": ()}, own] if seed == 2 else [*shared, own]  # a tuple once saved
        torch.save({"model": _net(seed).state_dict(), "stages": stages, "epoch": 3, "val": {}}, path)
        runs.append(path)
    out = write_average(runs, tmp_path / "soup" / "best.pt")
    state, stages = load_init(out)
    assert torch.allclose(state["0.weight"], (_net(1).state_dict()["0.weight"] + _net(2).state_dict()["0.weight"]) / 2)
    assert stages[:-1] == shared
    average = stages[-1]
    assert average["stage"] == WEIGHT_AVERAGE
    assert [m["share"] for m in average["members"]] == [0.5, 0.5]
    assert [m["stages"][0]["stage"] for m in average["members"]] == ["fine-tune", "fine-tune"]
    assert torch.load(out, weights_only=True)["epoch"] is None


def test_the_shipped_weights_folder_is_a_member_and_with_itself_averages_to_itself(tmp_path):
    from covidviz.tools.cli import main
    out = tmp_path / "soup.pt"
    assert main(["average-weights", str(WEIGHTS), str(WEIGHTS), "--out", str(out)]) == 0
    state, stages = load_init(out)
    shipped, shipped_stages = load_init(WEIGHTS)
    assert all(torch.equal(state[key], value.float()) for key, value in shipped.items())
    assert stages[:-1] == shipped_stages and stages[-1]["members"][0]["stages"] == []


def test_every_kind_of_stage_is_named_by_what_made_it():
    trained = {"stage": "128px lung field", "epochs": 5, "lr": 2e-4, "batch_size": 32, "fast": True,
               "epochs_run": 3, "best_epoch": 2}
    assert stage_text(trained) == ("128px lung field (best at epoch 2 of at most 5, peak lr 0.0002, batch 32, "
                                   "bf16 autocast on)")
    assert stage_text(trained, detail=False) == "128px lung field (best epoch 2)"
    refit = {"stage": HEAD_REFIT, "films": 6271, "acquisition_views": 1, "C": 0.003}
    assert stage_text(refit) == ("head refit (the linear head refitted on the frozen pooled features of 6,271 "
                                 "training films, each read clean and through 1 random acquisition transform; "
                                 "logistic regression, classes balanced, C 0.003 by 5-fold cross-validation over "
                                 "training patients)")
    assert "(classes equal, adult sources 50% of pneumonia), C 0.003" in stage_text({**refit, "adult_pneumonia": 0.5})
    assert "each read once, clean)" in stage_text({**refit, "acquisition_views": 0}, detail=False)
    assert "through 2 random acquisition transforms" in stage_text({**refit, "acquisition_views": 2})
    refined = {**refit, "outside_lungs": 0.3, "map_films": 3000}
    assert stage_text(refined).endswith("training patients; then refined with the penalty on Grad-CAM outside the "
                                        "lungs, weight 0.3 chosen on validation, read on the maps of 3,000 training "
                                        "films)")
    assert stage_text({**refined, "outside_lungs": 0.0}) == stage_text(refit), "a refinement not kept is not named"
    assert stage_text({"stage": WEIGHT_AVERAGE, "members": [{}, {}, {}]}).startswith("weight average of 3 fine-tunes")
