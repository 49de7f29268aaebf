"""The shipped model on real fixtures: same numbers as its evaluation, and a CLI that never crashes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from covidviz import CLASSES
from covidviz.paths import latest_previous
from covidviz.verified import read_sidecar
from tests.conftest import FIXTURES, ROOT, WEIGHTS, dicom_path, fixture_rows


def _evaluated_probabilities() -> dict[str, np.ndarray]:
    out = {}
    for split in ("val", "test", "external"):
        with (WEIGHTS / "eval" / f"{split}_predictions.csv").open() as handle:
            for row in csv.DictReader(handle):
                out[row["file"]] = np.array([float(row[f"p_{c}"]) for c in CLASSES])
    return out


def test_fixture_predictions_match_the_committed_evaluation(predictor):
    """Upload path (bytes -> loader -> preprocessing -> model) gives what `evaluate` recorded."""
    evaluated = _evaluated_probabilities()
    compared = 0
    for row in fixture_rows():
        prediction = predictor.predict_bytes((FIXTURES / row["fixture"]).read_bytes(), row["fixture"])
        probs = np.array([prediction.probabilities[c] for c in CLASSES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        if row["data_file"] in evaluated:
            np.testing.assert_allclose(probs, evaluated[row["data_file"]], atol=2e-4)
            compared += 1
    assert compared >= 4  # fixtures were drawn from the internal test split and the external set


def test_dicom_prediction_carries_reader_info(predictor):
    prediction = predictor.predict_bytes(open(dicom_path("RG1_J2KI.dcm"), "rb").read(), "chest.dcm")
    assert prediction.error is None and prediction.label in CLASSES
    assert prediction.info["modality"] == "CR" and prediction.info["view position"] == "PA"


def test_cli_predict_json_goes_on_after_a_bad_file_and_exits_1(tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    for row in fixture_rows()[:3]:
        (folder / row["fixture"]).write_bytes((FIXTURES / row["fixture"]).read_bytes())
    (folder / "broken.png").write_bytes((FIXTURES / fixture_rows()[0]["fixture"]).read_bytes()[:500])
    (folder / "empty.dcm").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(folder), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5
    errors = {line["file"].split("/")[-1]: line["error"] for line in lines if "error" in line}
    assert set(errors) == {"broken.png", "empty.dcm"}
    assert "truncated or corrupt" in errors["broken.png"] and "empty" in errors["empty.dcm"]
    for line in lines:
        if "error" not in line:
            assert line["label"] in CLASSES and set(line["probabilities"]) == set(CLASSES)
            assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert line["warnings"] == []


def test_cli_predict_plain_lines_and_success_exit(tmp_path):
    one = FIXTURES / fixture_rows()[0]["fixture"]
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(one)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    name, label, probs = result.stdout.strip().split("\t")[:3]
    assert name == str(one) and label in CLASSES and probs.startswith("covid=")


@pytest.mark.slow
def test_bench_compares_engines_on_the_same_images_and_prints_json():
    result = subprocess.run([sys.executable, "-m", "covidviz", "bench", "--repeats", "3", "--data", "/nonexistent"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert "example X-rays" in summary["images"]
    engines = summary["engines"]
    assert {"pytorch-fp32", "onnxruntime-fp32"} <= set(engines)
    assert ("pytorch-bf16" in engines) == summary["native_bf16"]
    for figures in engines.values():
        assert figures["latency_ms_batch1"] > 0 and figures["throughput_img_per_s"] > 0
    # the exact engines: same labels as PyTorch fp32 and probabilities within the 1e-3
    assert engines["onnxruntime-fp32"]["label_agreement"] == 1.0
    assert engines["onnxruntime-fp32"]["max_probability_difference"] < 1e-3
    assert engines["openvino-fp32"]["label_agreement"] == 1.0
    assert engines["openvino-fp32"]["max_probability_difference"] < 1e-3
    assert summary["physical_limit_ms_per_image"] > 0 and summary["gflop_per_image"] > 0
    # two independent operation counts (the exported graph, PyTorch's layers) and two peaks (fp32, int8)
    assert summary["gflop_per_image"] == pytest.approx(summary["hook_gflop_per_image"], rel=0.01)
    assert summary["peak_gflop_per_s"] > 0 and summary["int8_peak_gop_per_s"] > 0
    assert all(0 < e["share_of_peak"] for e in engines.values())
    assert "onnxruntime-fp32" in result.stdout and "limit: " in result.stdout and "share of the peak" in result.stdout
    # beside the previous model (the newest under weights/history/): its operations and page path per image
    previous = summary["against_previous"]
    kept = latest_previous(WEIGHTS)  # the newest under weights/history/: v1 while v2 is shipped, v2 after v3
    assert previous["previous"]["folder"].endswith(f"history{os.sep}{kept.name}")
    assert previous["previous"]["version"] == read_sidecar(kept)["weights_sha256"][:12]
    assert previous["gflop_ratio"] == pytest.approx(
        previous["shipped"]["gflop_per_image"] / previous["previous"]["gflop_per_image"], abs=0.01)
    assert previous["shipped"]["page_path_ms"] > 0 and previous["previous"]["page_path_ms"] > 0
    assert "per image against the previous model" in result.stdout
    if "openvino-int8" in engines:  # the shipped INT8 graph: its ratios and its agreement on this CPU's kernels
        from covidviz.model.cpu import int8_kernels
        assert summary["int8"]["int8_kernels"] == int8_kernels()
        assert "INT8 (approximate)" in result.stdout and f"this CPU's {int8_kernels()} int8 kernels" in result.stdout
        if summary["int8"]["agreement"] is None:  # kernels it was never measured on: bench says how to measure
            assert "quantise --measure" in result.stdout
        else:
            assert summary["int8"]["agreement"]["internal_test"]["images"] > 0 and "internal_test" in result.stdout


def test_cli_gives_a_colour_photograph_no_class(tmp_path):
    from PIL import Image
    from skimage.data import chelsea
    photo = tmp_path / "cat.png"
    Image.fromarray(chelsea()).save(photo)
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(photo), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr  # scored, with warnings: not a rejection
    line = json.loads(result.stdout)
    # no class: a colour picture is not a radiograph, whatever the feature distance says (README, Bad input)
    assert line["label"] is None and "a colour picture, not a radiograph" in line["abstained"]
    assert any("colour image" in w for w in line["warnings"])
    assert any("This is a colour picture, and radiographs are grayscale" in w for w in line["warnings"])
    assert line["ood_distance"] > read_sidecar(WEIGHTS)["ood"]["caution"]  # the guard cautions at least
