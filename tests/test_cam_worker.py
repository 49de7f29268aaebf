"""The library heatmap methods in a worker process: the same maps as in this process, progress reported, clear
errors, stopped when idle or interrupted and started again on the next request."""

from __future__ import annotations

import time

import numpy as np
import pytest

from covidviz.explain.cam.library import library_cam
from covidviz.explain.cam.remote import CamWorker
from covidviz.io.loading import load_xray_file
from covidviz.model.predictor import Predictor
from covidviz.model.preprocessing import canonical_image, model_batch
from tests.conftest import FIXTURES, WEIGHTS


@pytest.fixture(scope="module")
def worker():
    worker = CamWorker(WEIGHTS, idle=3600)
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def batch():
    return model_batch([canonical_image(load_xray_file(sorted(FIXTURES.glob("*.png"))[0]).pixels)], 128)


def test_the_worker_draws_the_maps_this_process_draws(worker, batch):
    model = Predictor(WEIGHTS, engine="torch").model
    for k, method in enumerate(("HiResCAM", "Grad-CAM++", "EigenCAM")):
        np.testing.assert_allclose(worker.cam(method, batch, k), library_cam(model, method, batch, k), atol=1e-6)
    with pytest.raises(ValueError, match="unknown CAM method"):
        worker.cam("No-CAM", batch, 0)
    assert worker.pid is not None  # a refused request leaves the worker serving


def test_score_cam_reports_its_progress_and_an_interrupted_request_stops_the_worker(worker):
    small = model_batch([canonical_image(load_xray_file(sorted(FIXTURES.glob("*.png"))[0]).pixels)], 96)
    seen: list[tuple[int, int]] = []
    cam = worker.cam("Score-CAM", small, 1, progress=lambda done, total: seen.append((done, total)))
    assert cam.shape == (96, 96) and np.isfinite(cam).all()
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)

    class LeftThePage(BaseException):  # what Streamlit raises in a session whose user changed the input
        pass

    def leave(done: int, total: int) -> None:
        raise LeftThePage

    first = worker.pid
    with pytest.raises(LeftThePage):
        worker.cam("Score-CAM", small, 1, progress=leave)
    assert worker.pid is None  # stopped: its unread answer can never reach the next request
    np.testing.assert_allclose(worker.cam("Score-CAM", small, 1), cam, atol=1e-6)
    assert worker.pid not in (None, first)


def test_an_idle_worker_stops_and_the_next_request_starts_one(batch):
    worker = CamWorker(WEIGHTS, idle=0.5)
    try:
        first = worker.cam("HiResCAM", batch, 0)
        assert worker.pid is not None
        deadline = time.monotonic() + 10
        while worker.pid is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.pid is None
        np.testing.assert_array_equal(worker.cam("HiResCAM", batch, 0), first)
    finally:
        worker.stop()
