"""Shipped weights: verified by hash, no pickle, clear errors for anything wrong."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from covidviz.errors import WeightsError
from covidviz.model.network import build_model
from covidviz.model.weights import load_weights, save_weights
from covidviz.verified import SIDECAR_FILE, WEIGHTS_FILE
from tests.conftest import WEIGHTS


@pytest.fixture()
def saved(tmp_path):
    model = build_model(3).eval()
    save_weights(model, tmp_path, {"input_size": 224})
    return tmp_path, model


def test_round_trip_is_fp16_exact(saved):
    folder, model = saved
    loaded, sidecar = load_weights(folder)
    assert sidecar["input_size"] == 224 and len(sidecar["weights_sha256"]) == 64
    for name, tensor in model.state_dict().items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(loaded.state_dict()[name], expected), name


def test_a_flipped_byte_is_refused(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt or was replaced"):
        load_weights(folder)


def test_missing_weights_and_sidecar_are_refused(saved, tmp_path):
    folder, _ = saved
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_weights(folder)
    with pytest.raises(WeightsError, match="No model sidecar"):
        load_weights(tmp_path / "nowhere")


def test_a_sidecar_for_another_model_is_refused(saved):
    folder, _ = saved
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    sidecar["classes"] = ["covid", "normal"]
    (folder / SIDECAR_FILE).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsError, match="knows densenet121"):
        load_weights(folder)


def test_a_pickle_renamed_as_weights_is_refused(saved):
    folder, model = saved
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)  # a pickle where safetensors belongs
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    from covidviz.verified import sha256_of
    sidecar["weights_sha256"] = sha256_of(folder / WEIGHTS_FILE)
    (folder / SIDECAR_FILE).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsError, match="cannot be read"):
        load_weights(folder)


def test_shipped_weights_verify_and_describe_their_training(tmp_path):
    model, sidecar = load_weights(WEIGHTS)
    assert sidecar["initialisation"].startswith("random")
    assert sidecar["data"]["external_used_for_training"] is False
    assert sidecar["input_size"] in (128, 160, 192, 224, 256)
    assert 0.05 < sidecar["temperature"] < 20
    counts = sidecar["data"]["counts"]
    assert set(counts) == {"train", "val", "test"}
    copy = tmp_path / "w"
    shutil.copytree(WEIGHTS, copy)
    data = bytearray((copy / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (copy / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError):
        load_weights(copy)
