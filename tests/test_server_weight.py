"""What the dashboard server holds: the memory breakdown script runs on the real model and adds up, and the
serving path loads neither torch with torchvision (about 260 MB) nor the libraries only evaluation needs
(scikit-learn with SciPy: about 130 MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from covidviz.explain.reading import read_xray
from covidviz.io.loading import load_xray_file
from covidviz.model.predictor import Predictor
from tests.conftest import FIXTURES, ROOT, WEIGHTS

NOT_SERVED = ("torch", "torchvision", "sklearn", "scipy.stats", "scipy.optimize")


def test_the_serving_path_loads_neither_torch_nor_evaluation_libraries(tmp_path):
    """A fresh cache: the lean predictor has its plan made by a child process, then serves without torch."""
    code = ("import sys, json\n"
            "from covidviz.model.predictor import Predictor\n"
            "import covidviz.ui.diagnose_view, covidviz.ui.resources, covidviz.ui.verdict_view\n"
            "from covidviz.explain.reading import heatmap, read_xray\n"
            "from covidviz.io.loading import load_xray_file\n"
            "p = Predictor('weights', engine='onnxruntime', lean=True)\n"
            "x = load_xray_file(sorted(__import__('pathlib').Path('examples/xrays').glob('*.png'))[0])\n"
            "r = read_xray(p, x, 'x', p.guard)\n"
            "heatmap(r, p, 'Grad-CAM', 1)\n"
            f"print(json.dumps({{'loaded': [m for m in {NOT_SERVED!r} if m in sys.modules], 'note': p.engine_note,"
            " 'probabilities': r.probabilities.tolist()}))\n")
    env = {**os.environ, "COVIDVIZ_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["loaded"] == []
    assert "remembered" in served["note"] and list((tmp_path / "plans").glob("*.json"))  # the child's plan

    full = Predictor(WEIGHTS, engine="torch")
    expected = read_xray(full, load_xray_file(sorted(FIXTURES.glob("*.png"))[0]), "x", full.guard).probabilities
    assert max(abs(a - b) for a, b in zip(served["probabilities"], expected)) < 1e-5


@pytest.mark.slow
def test_memory_breakdown_runs_on_the_real_model_and_adds_up():
    result = subprocess.run([sys.executable, "scripts/memory_breakdown.py", "--engine", "onnxruntime", "--readings", "2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    steps = {s["step"]: s for s in report["steps"]}
    assert "ONNX Runtime" in steps and "torch" not in steps and not report["torch_loaded"] and report["lean"]
    assert "classifier and lung segmenter engines, from this machine's serving plan" in steps  # Predictor's stages
    assert "ONNX Runtime fp32" in report["engine"] and "lung segmenter on ONNX Runtime" in report["segmenter"]
    assert sum(s["added_mb"] for s in report["steps"]) == pytest.approx(report["server_mb"], abs=0.1 * len(steps))
    assert report["steps"][-1]["mb"] == report["server_mb"] and report["malloc_arena_max"] == "2"
    assert report["decode_workers_mb"] > 0  # the decoding worker: a process of its own, counted apart
    assert "server:" in result.stdout and "decoding worker" in result.stdout
