"""Several sessions share one model: maps computed in parallel threads equal their single-threaded
results, and no hook is ever left on the shared model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from covidviz.explain.cam.library import library_cam
from covidviz.explain.reading import heatmap, read_xray
from covidviz.io.loading import load_xray
from covidviz.model.predictor import Predictor
from tests.conftest import FIXTURES, fixture_rows


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_full_backward_hooks", {}) or {}) for m in model.modules())


def _job(predictor: Predictor, name: str, method: str, k: int) -> np.ndarray:
    reading = read_xray(predictor, load_xray((FIXTURES / name).read_bytes(), name), name, None)
    return heatmap(reading, predictor, method, k)


def test_parallel_maps_equal_serial_maps_and_hooks_never_leak(predictor):
    names = [row["fixture"] for row in fixture_rows()]
    jobs = [(name, method, k) for name in names for method, k in (("Grad-CAM", 0), ("Grad-CAM++", 1), ("HiResCAM", 2))]
    before = _hook_count(predictor.model)
    serial = [_job(predictor, *job) for job in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda job: _job(predictor, *job), jobs * 2))
    for i, cam in enumerate(parallel):
        np.testing.assert_allclose(cam, serial[i % len(jobs)], atol=1e-5, err_msg=str(jobs[i % len(jobs)]))
    assert _hook_count(predictor.model) == before == 0
    assert all(p.requires_grad for p in predictor.model.parameters())  # the shared model is untouched


def test_many_library_runs_leave_no_hooks_behind(predictor):
    batch = torch.zeros(1, 3, predictor.input_size, predictor.input_size)
    for _ in range(20):
        library_cam(predictor.model, "XGrad-CAM", batch, 0)
    assert _hook_count(predictor.model) == 0
