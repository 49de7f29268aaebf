"""What the dashboard server holds: the memory breakdown script runs on the real model and adds up, and the
serving path does not import the libraries only evaluation needs (scikit-learn with SciPy: about 130 MB)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EVALUATION_ONLY = ("sklearn", "scipy.stats", "scipy.optimize")


def test_the_serving_path_leaves_evaluation_libraries_unloaded():
    code = ("import sys\n"
            "from covidviz.model.predictor import Predictor\n"
            "import covidviz.ui.diagnose_view, covidviz.ui.resources, covidviz.ui.verdict_view\n"
            "from covidviz.explain.reading import read_xray\n"
            "from covidviz.io.loading import load_xray_file\n"
            "p = Predictor('weights')\n"
            "x = load_xray_file(sorted(__import__('pathlib').Path('examples/xrays').glob('*.png'))[0])\n"
            "read_xray(p, x, 'x', p.guard)\n"
            f"print([m for m in {EVALUATION_ONLY!r} if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_memory_breakdown_runs_on_the_real_model_and_adds_up():
    result = subprocess.run([sys.executable, "scripts/memory_breakdown.py", "--engine", "onnxruntime", "--readings", "2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    steps = {s["step"]: s for s in report["steps"]}
    assert {"torch", "ONNX Runtime", "torchvision"} <= set(steps)
    assert any(name.startswith("classifier engine: ONNX Runtime fp32") for name in steps)  # Predictor's own stages
    assert any(name.startswith("lung segmenter on ONNX Runtime") for name in steps)
    assert sum(s["added_mb"] for s in report["steps"]) == pytest.approx(report["server_mb"], abs=0.1 * len(steps))
    assert report["steps"][-1]["mb"] == report["server_mb"] and report["malloc_arena_max"] == "2"
    assert report["decode_workers_mb"] > 0  # the decoding worker: a process of its own, counted apart
    assert "server:" in result.stdout and "decoding worker" in result.stdout
