"""Shared fixtures: real X-ray PNGs committed under tests/fixtures, real DICOMs from pydicom-data."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from covidviz._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # tests import torchvision directly too

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# the audit log of everything the tests predict goes to a throw-away database, never the user's
os.environ["COVIDVIZ_DB_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='covidviz-audit-')}/audit.sqlite"
# nor a site calibration profile of the user's (or one a test wrote) unless a test names its own
os.environ["COVIDVIZ_SITE_PROFILE"] = f"{tempfile.mkdtemp(prefix='covidviz-site-')}/site_profile.json"
# one engine for every process the tests start (CLI, dashboard server, Ray workers): results compared across
# processes must not depend on which engine each one measured faster (test_engine covers "auto")
os.environ["COVIDVIZ_ENGINE"] = "onnxruntime"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# a new fuzz seed every run (tests/test_fuzz_loading.py), printed in the session header so a finding replays
FUZZ_SEED = int(os.environ.get("COVIDVIZ_FUZZ_SEED") or int.from_bytes(os.urandom(4), "big") % 2**31)


def pytest_report_header() -> str:
    return f"fuzz seed this run: {FUZZ_SEED} (replay: COVIDVIZ_FUZZ_SEED={FUZZ_SEED} make test, or " \
           f"scripts/fuzz_load_xray.py --seed {FUZZ_SEED} -n 500)"
FIXTURES = ROOT / "examples" / "xrays"
WEIGHTS = ROOT / "weights"
SHARED = ROOT.parent / "shared" / "cxr"


def fixture_rows() -> list[dict[str, str]]:
    with (FIXTURES / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def predictor():
    """The shipped model, loaded and verified once for the whole run (engine: COVIDVIZ_ENGINE above)."""
    from covidviz.model.predictor import Predictor
    return Predictor(WEIGHTS)


@pytest.fixture(scope="session")
def xray_png() -> bytes:
    """A real adult PA chest X-ray (NIH ChestX-ray14, 256 x 256, 8-bit gray)."""
    return (FIXTURES / "jrzech__00001368_000.png").read_bytes()


@pytest.fixture(scope="session")
def xray_gray(xray_png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(xray_png)).convert("L"))


def dicom_path(name: str) -> str:
    from pydicom.data import get_testdata_file
    path = get_testdata_file(name)
    assert path, f"{name} not found: is pydicom-data installed?"
    return path


requires_data = pytest.mark.skipif(not (SHARED / "metadata.csv").is_file(),
                                   reason="../shared/cxr is not beside the project")


@pytest.fixture
def downloads(monkeypatch):
    """Read what a download button serves (bytes), from the media store AppTest creates."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test as app_test_module
    stores = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint: str) -> None:
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Recording)
    return lambda url: stores[-1].get_file(url.rsplit("/", 1)[1]).content
