"""Archive scoring on a real local Ray: the same numbers as ``predict --json``, rejected inputs listed and
never fatal, resumable, recorded in the audit log. One Ray for the whole module (it takes seconds to start)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from covidviz import CLASSES
from covidviz.audit.db import dispose
from covidviz.audit.query import load_records
from tests.conftest import FIXTURES, ROOT, WEIGHTS, dicom_path, fixture_rows

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """A local Ray sized like the CLI's, and a temporary audit database for the module."""
    import ray

    from covidviz.tools.batch import start_ray
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.sqlite'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COVIDVIZ_DB_URL", url)
        start_ray(None, workers=2, threads=1, ship_code=False)
        yield url
        ray.shutdown()
    dispose(url)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The fixture X-rays, a real DICOM, a truncated PNG and a text file with a DICOM name, in a tree."""
    root = tmp_path_factory.mktemp("archive")
    (root / "b" / "c").mkdir(parents=True)
    for row in fixture_rows():
        shutil.copy(FIXTURES / row["fixture"], root / row["fixture"])
    shutil.copy(dicom_path("RG1_UNCI.dcm"), root / "b" / "chest.dcm")
    (root / "b" / "corrupt.png").write_bytes((FIXTURES / fixture_rows()[0]["fixture"]).read_bytes()[:500])
    (root / "b" / "c" / "report.dcm").write_text("not an image at all\n")
    return root


@pytest.fixture(scope="module")
def first_run(ray_session, archive, tmp_path_factory):
    from covidviz.tools.batch import run_batch
    out = tmp_path_factory.mktemp("results") / "results.parquet"
    summary = run_batch(str(archive), out, weights_dir=WEIGHTS, workers=2, threads=1, batch_size=4, progress=None)
    return out, summary


def _predict_json(paths: list[str], url: str) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", *paths, "--json"], capture_output=True,
                            text=True, cwd=ROOT, timeout=600, env={**os.environ, "COVIDVIZ_DB_URL": url})
    assert result.returncode == 1, result.stderr  # two inputs are rejected
    return {line["file"]: line for line in map(json.loads, result.stdout.splitlines())}


def test_results_equal_predict_json(first_run, archive, ray_session):
    out, summary = first_run
    results = pd.read_parquet(out)
    expected = _predict_json([str(archive)], ray_session)
    assert sorted(results["file"]) == sorted(expected)
    assert summary.total == len(expected) == 9 and summary.scored == 7 and len(summary.rejected) == 2
    for row in results.itertuples():
        reference = expected[row.file]
        if "error" in reference:
            assert row.error == reference["error"] and pd.isna(row.label)
            continue
        assert pd.isna(row.error) and row.label == reference["label"]
        assert row.abstained == reference["abstained"] or (pd.isna(row.abstained) and reference["abstained"] is None)
        assert list(row.warnings) == reference["warnings"]
        for c in CLASSES:
            assert abs(row.probabilities[c] - reference["probabilities"][c]) <= 1e-6 + 1e-12, (row.file, c)
        assert row.sha256 and row.model_sha256 == json.loads((WEIGHTS / "model.json").read_text())["weights_sha256"]


def test_rejected_inputs_are_listed_with_their_error(first_run):
    out, summary = first_run
    rejected = dict(summary.rejected)
    assert set(map(os.path.basename, rejected)) == {"corrupt.png", "report.dcm"}
    by_name = {os.path.basename(k): v for k, v in rejected.items()}
    assert "truncated or corrupt" in by_name["corrupt.png"]
    assert "Accepted:" in by_name["report.dcm"]


def test_a_second_run_skips_everything_and_a_new_file_alone_is_scored(first_run, archive, tmp_path):
    from covidviz.tools.batch import run_batch
    out, _ = first_run
    again = run_batch(str(archive), out, weights_dir=WEIGHTS, workers=2, threads=1, progress=None)
    assert again.total == 9 and again.skipped == 9 and again.scored == 0 and not again.rejected
    listing = tmp_path / "inputs.txt"
    extra = tmp_path / "moved.png"
    shutil.copy(FIXTURES / fixture_rows()[1]["fixture"], extra)
    listing.write_text("# archive export\n" + "\n".join(sorted(pd.read_parquet(out)["file"])) + f"\n\n{extra.name}\n")
    third = run_batch(str(listing), out, weights_dir=WEIGHTS, workers=1, threads=1, progress=None)
    assert third.total == 10 and third.skipped == 9 and third.scored == 1
    results = pd.read_parquet(out)
    assert len(results) == 10 and results["file"].is_unique and str(extra) in set(results["file"])


def test_batch_results_are_in_the_audit_log(first_run, ray_session):
    """One audit record per result row, whichever runs wrote them; content hashes, never the paths."""
    out, _ = first_run
    results = pd.read_parquet(out)
    batch = load_records(ray_session)
    batch = batch[batch["interface"] == "batch"]
    assert sorted(batch["input_sha256"]) == sorted(results["sha256"])
    assert (batch["kind"] == "rejection").sum() == results["error"].notna().sum() == 2
    assert not any(str(out.parent) in str(v) for v in batch.to_numpy().ravel())


def test_a_batch_worker_serves_lean_with_predicts_numbers(tmp_path):
    """A worker in a fresh process and cache (as on a new node): the driver has the one-thread plan made, and the
    worker serves from it without torch, giving the probabilities PyTorch gives."""
    code = ("import json, pathlib, sys\n"
            "from covidviz.io.loading import load_xray_file\n"
            "from covidviz.model.serving_plan import ensure_plan\n"
            "from covidviz.tools.batch import Scorer\n"
            "made = ensure_plan(pathlib.Path('weights'), 1)\n"
            "worker = Scorer('weights', 1)\n"
            "x = load_xray_file(sorted(pathlib.Path('examples/xrays').glob('*.png'))[0])\n"
            "p = worker.predictor.predict_xrays([x], ['x'])[0]\n"
            "print(json.dumps({'made': made, 'torch': 'torch' in sys.modules, 'note': worker.predictor.engine_note,"
            " 'probabilities': p.probabilities}))\n")
    env = {**os.environ, "COVIDVIZ_CACHE": str(tmp_path), "COVIDVIZ_ENGINE": "onnxruntime"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["made"] and not served["torch"] and "remembered" in served["note"]

    from covidviz.io.loading import load_xray_file
    from covidviz.model.predictor import Predictor
    full = Predictor(WEIGHTS, engine="torch")
    expected = full.predict_xrays([load_xray_file(sorted(FIXTURES.glob("*.png"))[0])], ["x"])[0].probabilities
    assert max(abs(served["probabilities"][c] - expected[c]) for c in CLASSES) < 1e-5


def test_a_colour_picture_gets_no_class_through_the_batch_path(tmp_path):
    """The batch task's decoder and its scorer, in this process: a photograph's colour survives the decoded
    Parquet columns, so ``batch`` gives it no class as ``predict`` does (its features alone would let it pass)."""
    import numpy as np
    from PIL import Image
    from skimage.data import chelsea

    from covidviz.model.decision import COLOUR_REASON
    from covidviz.tools.batch import Scorer
    from covidviz.tools.batch_sources import decode_batch, folder_source
    Image.fromarray(chelsea()).save(tmp_path / "cat.png")
    source = folder_source(tmp_path)
    decoded = decode_batch({"key": np.array(source.keys())}, source)
    assert decoded.column("colourfulness")[0].as_py() > 0.04
    (row,) = Scorer(str(WEIGHTS), 1)(decoded).to_pylist()
    assert row["label"] is None and COLOUR_REASON in row["abstained"]
