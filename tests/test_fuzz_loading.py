"""Fuzzing load_xray: every mutated real file loads as a valid Xray or raises XrayInputError, within a time limit.

The short CI run of the campaign in scripts/fuzz_load_xray.py: the same seeds (real PNG/JPEG chest X-rays and
pydicom-data DICOMs) and mutations, a few hundred derandomized examples (the same every run) and 500 from a
seed that changes every run (printed in pytest's header, ``COVIDVIZ_FUZZ_SEED`` replays it), each input in a
worker process with a per-input time limit so that a hang fails the test instead of stalling CI. Every file
the long campaign found (tests/fuzz_corpus/) is replayed as a regression.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.fuzz_load_xray import CORPUS, FINDINGS, MAX_FIXTURE_BYTES, SEED_DICOMS, Worker, mutate, seed_corpus
from tests.conftest import FUZZ_SEED

CORPUS_FILES = sorted(p for p in CORPUS.glob("*") if p.name != "README.md")


@pytest.fixture(scope="module")
def worker():
    running = Worker()
    yield running
    running.close()


@pytest.fixture(scope="module")
def seeds():
    return seed_corpus()


def test_seed_corpus_is_the_real_files_unchanged(worker, seeds):
    names = {seed.name for seed in seeds}
    assert set(SEED_DICOMS) <= names, "pydicom-data should provide every seed DICOM"
    outcomes = {seed.name: worker.run(seed.data, seed.filename) for seed in seeds}
    assert {kind for kind, _ in outcomes.values()} <= {"loaded", "rejected"}, outcomes
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        assert outcomes[name][0] == "loaded", (name, outcomes[name])
    assert all(kind == "loaded" for name, (kind, _) in outcomes.items() if name.endswith((".png", ".jpg")))
    assert "frames" in outcomes["SC_rgb_rle_2frame.dcm"][1]


def test_mutations_reach_past_the_format_sniffer(worker, seeds):
    """The campaign is only as good as its inputs: they must load, and fail in many different places."""
    outcomes = Counter()
    problems = set()
    for i in range(200):
        data, filename, _ = mutate(random.Random(i), seeds)
        kind, detail = worker.run(data, filename)
        outcomes[kind] += 1
        problems.add(detail.split("(")[0] if kind == "rejected" else kind)
    assert outcomes["loaded"] >= 20 and outcomes["rejected"] >= 100, outcomes
    assert len(problems) >= 10, problems
    assert not any(outcomes[kind] for kind in FINDINGS), outcomes


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_fuzzed_input_loads_or_is_rejected_cleanly(worker, seeds, seed):
    """Replay a failure with ``mutate(random.Random(seed), seed_corpus())`` from scripts/fuzz_load_xray.py."""
    data, filename, origin = mutate(random.Random(seed), seeds)
    kind, detail = worker.run(data, filename)
    assert kind in ("loaded", "rejected"), f"{origin} as {filename!r}: {kind}: {detail}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_regression_fixture_loads_or_is_rejected_cleanly(worker, path: Path):
    readme = (CORPUS / "README.md").read_text()
    assert f"`{path.name}`" in readme, "each fixture needs a README line saying what it triggered"
    assert path.stat().st_size <= MAX_FIXTURE_BYTES
    upload_name = "upload" + (path.suffix if path.suffix != ".bin" else "")
    kind, detail = worker.run(path.read_bytes(), upload_name)
    assert kind in ("loaded", "rejected"), f"{path.name}: {kind}: {detail}"


def test_every_readme_line_names_a_kept_fixture():
    named = set(re.findall(r"^- `([^`]+)`", (CORPUS / "README.md").read_text(), flags=re.M))
    assert named == {p.name for p in CORPUS_FILES}


def test_deflate_bomb_is_refused_before_it_is_inflated(worker):
    """A 300 KB deflated DICOM that inflates to 300 MB (pydicom inflates it whole: 50 MB would be 50 GB)."""
    import io
    import zlib

    import pydicom

    from tests.conftest import dicom_path

    real = Path(dicom_path("image_dfl.dcm")).read_bytes()
    stream = io.BytesIO(real)
    pydicom.filereader.read_preamble(stream, True)
    pydicom.filereader._read_file_meta_info(stream)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = real[:stream.tell()] + b"".join(deflate.compress(bytes(2**20)) for _ in range(300)) + deflate.flush()
    kind, detail = worker.run(bomb, "bomb.dcm")
    assert (kind, detail.split(" inflates")[0]) == ("rejected", "The deflated DICOM data set"), (kind, detail)


def test_a_new_seed_every_run_finds_nothing(worker):
    """500 executions from this run's seed: over many runs, CI keeps exploring instead of replaying."""
    findings = []
    for i in range(500):
        kind, detail = worker.run_index(FUZZ_SEED + i)
        if kind not in ("loaded", "rejected"):
            findings.append(f"execution {i} (replay: scripts/fuzz_load_xray.py --seed {FUZZ_SEED} --start {i} -n 1): "
                            f"{kind}: {detail}")
    assert not findings, findings
