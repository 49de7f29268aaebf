"""OpenVINO: fp32 gives PyTorch's numbers and maps; the INT8 graph is served only by name, or by ``auto``
where the deployment allows it and its recorded agreement meets the floor; an INT8 graph that was altered
or made from other weights is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from covidviz.errors import WeightsError
from covidviz.explain.cam.fast_gradcam import cam_pass, gradcam_all_classes
from covidviz.model.cpu import int8_kernels
from covidviz.model.decision import rule_from_sidecar
from covidviz.model.engine import build_engine
from covidviz.model.openvino_engine import (
    INT8_AGREEMENT_FLOOR,
    INT8_MODEL,
    INT8_SUBDIR,
    int8_record,
    measured_agreement,
    under_the_models_rule,
)
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import model_batch
from tests.conftest import FIXTURES, WEIGHTS

INT8 = WEIGHTS / INT8_SUBDIR / INT8_MODEL
needs_int8 = pytest.mark.skipif(not INT8.is_file(), reason="no INT8 graph shipped (python -m covidviz quantise)")


@pytest.fixture(scope="module")
def torch_predictor() -> Predictor:
    return Predictor(WEIGHTS, engine="torch")


@pytest.fixture(scope="module")
def canonical(torch_predictor) -> list[np.ndarray]:
    from covidviz.io.loading import load_xray_file
    grays = [load_xray_file(p).pixels for p in sorted(FIXTURES.glob("*.png"))]
    return [p.image for p in torch_predictor.prepare(grays)]


def test_openvino_fp32_gives_pytorchs_logits_and_maps(torch_predictor, canonical):
    served = Predictor(WEIGHTS, engine="openvino")
    assert served.engine.name == "openvino" and "OpenVINO fp32" in served.engine_note
    np.testing.assert_allclose(served.probabilities(canonical), torch_predictor.probabilities(canonical), atol=1e-5)
    batch = model_batch(canonical[:3], torch_predictor.input_size)
    reference = gradcam_all_classes(torch_predictor.model, batch)
    maps = cam_pass(served.engine.run(batch), served.classifier_weight).maps
    scale = np.maximum(reference.maps.max(axis=(2, 3), keepdims=True), 1e-12)
    np.testing.assert_allclose(maps / scale, reference.maps / scale, atol=1e-3)


@needs_int8
def test_int8_is_served_by_name_with_its_agreement_on_this_cpus_kernels(torch_predictor, canonical):
    served = Predictor(WEIGHTS, engine="openvino-int8")
    measured = measured_agreement(int8_record(WEIGHTS, served.sidecar))
    assert served.engine.name == "openvino-int8" and "approximate" in served.engine_note
    assert int8_kernels() in served.engine_note
    batch = model_batch(canonical[:2], torch_predictor.input_size)
    maps = cam_pass(served.forward_for_maps(canonical[:2]), served.classifier_weight).maps
    reference_maps = gradcam_all_classes(torch_predictor.model, batch).maps
    scale = np.maximum(reference_maps.max(axis=(2, 3), keepdims=True), 1e-12)
    if measured is None:  # kernels nobody measured it on: the note says so, and the maps come from fp32
        assert "never measured" in served.engine_note and "quantise --measure" in served.engine_note
        assert np.abs(maps / scale - reference_maps / scale).max() <= 1e-3
        return
    test = measured["internal_test"]
    assert f"{test['label_agreement']:.2%}" in served.engine_note
    probs, reference = served.probabilities(canonical), torch_predictor.probabilities(canonical)
    # the fixtures are internal-test-like films: their difference stays within the largest measured here
    assert np.abs(probs - reference).max() <= test["max_probability_difference"] + 1e-6
    # maps are exact whichever graph draws them: fp32's, or INT8's within the recorded tolerance
    assert np.abs(maps / scale - reference_maps / scale).max() <= max(measured["max_map_difference"], 1e-3)


@needs_int8
def test_auto_serves_int8_only_where_allowed_and_measured_good_enough(torch_predictor, monkeypatch, tmp_path):
    model, sidecar = torch_predictor.model, torch_predictor.sidecar
    monkeypatch.delenv("COVIDVIZ_ALLOW_INT8", raising=False)
    engine, _ = build_engine("auto", model, sidecar, threads=1, weights_dir=WEIGHTS)
    assert engine.name != "openvino-int8"  # never silently
    monkeypatch.setenv("COVIDVIZ_ALLOW_INT8", "1")
    # a copy of the weights folder whose record is edited: build_engine caches per weights, so use other threads
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS, copy, ignore=shutil.ignore_patterns("comparison", "history", "eval"))
    record_path = copy / INT8_SUBDIR / "quantisation.json"
    record = json.loads(record_path.read_text())
    measured = measured_agreement(record)
    engine, note = build_engine("auto", model, sidecar, threads=2, weights_dir=copy)
    assert (engine.name == "openvino-int8") == (
        measured is not None and measured["internal_test"]["label_agreement"] >= INT8_AGREEMENT_FLOOR
        and under_the_models_rule(measured, sidecar)), note
    # measured on this CPU's kernels, below the floor: fp32
    here = {**(measured or next(iter(record["agreement"].values()))), "int8_kernels": int8_kernels()}
    here["internal_test"] = {**here["internal_test"], "label_agreement": INT8_AGREEMENT_FLOOR - 0.01}
    record_path.write_text(json.dumps({**record, "agreement": {int8_kernels(): here}}))
    engine, note = build_engine("auto", model, sidecar, threads=3, weights_dir=copy)
    assert engine.name != "openvino-int8", note
    # perfect agreement, but measured on other kernels only: nothing vouches for it here, so fp32
    elsewhere = {**here, "internal_test": {**here["internal_test"], "label_agreement": 1.0}}
    record_path.write_text(json.dumps({**record, "agreement": {"not-" + int8_kernels(): elsewhere}}))
    engine, note = build_engine("auto", model, sidecar, threads=4, weights_dir=copy)
    assert engine.name != "openvino-int8", note
    engine, note = build_engine("openvino-int8", model, sidecar, threads=4, weights_dir=copy)
    assert engine.name == "openvino-int8" and "never measured on this CPU's int8 kernels" in note
    # measured here, but under an older threshold: served by name, and the note says so
    earlier = {**here, "covid_threshold": 0.5}
    record_path.write_text(json.dumps({**record, "agreement": {int8_kernels(): earlier}}))
    engine, note = build_engine("openvino-int8", model, sidecar, threads=5, weights_dir=copy)
    assert engine.name == "openvino-int8" and "earlier decision rule (COVID-19 threshold 0.5" in note
    assert "quantise --measure" in note
    # ... and auto does not serve it, however well it agreed under that rule, nor a row that names no rule
    for row in (earlier, {k: v for k, v in here.items() if k != "covid_threshold"}):
        row = {**row, "internal_test": {**row["internal_test"], "label_agreement": 1.0}}
        record_path.write_text(json.dumps({**record, "agreement": {int8_kernels(): row}}))
        engine, note = build_engine("auto", model, sidecar, threads=6, weights_dir=copy)
        assert engine.name != "openvino-int8", note
    # the same perfect row under the model's own rule is served
    shipped_rule = {**here, "covid_threshold": rule_from_sidecar(sidecar).covid_threshold,
                    "internal_test": {**here["internal_test"], "label_agreement": 1.0}}
    record_path.write_text(json.dumps({**record, "agreement": {int8_kernels(): shipped_rule}}))
    engine, note = build_engine("auto", model, sidecar, threads=7, weights_dir=copy)
    assert engine.name == "openvino-int8", note


@needs_int8
def test_an_altered_or_foreign_int8_graph_is_refused(torch_predictor, tmp_path):
    copy = tmp_path / INT8_SUBDIR
    shutil.copytree(WEIGHTS / INT8_SUBDIR, copy)
    sidecar = torch_predictor.sidecar
    assert int8_record(tmp_path, sidecar)["weights_sha256"] == sidecar["weights_sha256"]
    with pytest.raises(WeightsError, match="quantised from weights"):
        int8_record(tmp_path, {**sidecar, "weights_sha256": "0" * 64})
    binary = copy / INT8_MODEL.replace(".xml", ".bin")
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary.write_bytes(bytes(data))
    with pytest.raises(WeightsError):
        int8_record(tmp_path, sidecar)


@needs_int8
def test_readme_int8_table_is_generated_from_the_shipped_record():
    from covidviz.evaluation.documents.int8_facts import INT8_BLOCK, int8_block
    from covidviz.model.decision import rule_from_sidecar
    from covidviz.verified import read_sidecar
    from tests.conftest import ROOT
    record = json.loads((WEIGHTS / INT8_SUBDIR / "quantisation.json").read_text())
    rule = rule_from_sidecar(read_sidecar(WEIGHTS))
    assert INT8_BLOCK.current((ROOT / "README.md").read_text()) == int8_block(record, rule), \
        "README INT8 table is stale: run `python -m covidviz facts`"
    here = record["agreement"].get(int8_kernels())
    if here is not None:  # this CPU's row was measured under the rule the model ships with
        assert here["covid_threshold"] == rule.covid_threshold, "run `python -m covidviz quantise --measure`"


def test_int8_table_shows_every_set_and_missing_rates_as_na():
    from covidviz.evaluation.documents.int8_facts import int8_block
    from covidviz.model.decision import DecisionRule
    one = {"images": 10, "label_agreement": 0.9, "disagreements": 1, "max_probability_difference": 0.2,
           "p99_probability_difference": 0.1, "fp32_covid_sensitivity": None, "int8_covid_sensitivity": None,
           "fp32_covid_specificity": 0.95, "int8_covid_specificity": 0.9}
    record = {"openvino": "2026.4.1-22982", "nncf": "3.4.0", "quantise_seconds": 61.0, "decision_rule": "argmax",
              "calibration": {"films": 300, "from": "validation split", "seed": 0},
              "options": {"preset": "mixed", "ignored_scope": ["features.conv0"], "bias_correction": True},
              "agreement": {"avx2": {"int8_kernels": "avx2", "cpu": "AMD EPYC", "covid_threshold": 0.307293,
                                     "internal_test": one, "external_Shenzhen": one, "max_map_difference": 0.05},
                            "amx": {"int8_kernels": "amx", "cpu": "Intel Xeon", "covid_threshold": 0.3072475,
                                    "internal_test": one, "max_map_difference": 0.01},
                            "avx512_vnni": {"int8_kernels": "avx512_vnni", "cpu": "AMD EPYC", "internal_test": one,
                                            "max_map_difference": 0.01}}}
    block = int8_block(record, DecisionRule(covid_threshold=0.3072475))
    assert ("| avx2 (AMD EPYC) | 0.307293 (not the shipped rule) | internal test | 10 | 90.00% (1 differ) | 0.200 | "
            "0.100 | n/a → n/a | 0.950 → 0.900 | n/a |") in block
    assert "| avx2 (AMD EPYC) | 0.307293 (not the shipped rule) | external Shenzhen |" in block
    assert "| amx (Intel Xeon) | 0.3072475 | internal test |" in block
    assert "| avx512_vnni (AMD EPYC) | not recorded (not the shipped rule) | internal test |" in block
    assert "the shipped rule's is 0.3072475" in block
    assert "| avx2 (AMD EPYC) | argmax |" in int8_block(
        {**record, "agreement": {"avx2": {**record["agreement"]["avx2"], "covid_threshold": None}}},
        DecisionRule())
    assert "0.050 with avx2 kernels, so heatmaps are drawn from the fp32 graph" in block
    assert "0.010 with amx kernels, so heatmaps are drawn from the INT8 graph" in block
    assert "`features.conv0`" in block and "OpenVINO 2026.4.1 " in block
