"""``batch --address`` on a real Ray cluster started as Ray 2.60 starts one: ``ray start --head`` with token
authentication on, a second node joined with ``ray start --address``; the job through Ray Client and at the
native address, with the token from Ray's usual places, and as a Ray job by the real ``ray job submit`` CLI, gives
``predict``'s numbers; without the token the cluster refuses it. The cluster is stopped by the process ids it started (:mod:`tests.ray_cluster_support`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from covidviz import CLASSES
from covidviz.audit.db import dispose
from covidviz.audit.query import load_records
from covidviz.tools.ray_cluster import auth_plan, job_address, token_source, wants_token
from tests.conftest import FIXTURES, ROOT, fixture_rows
from tests.ray_cluster_support import RAY, local_cluster

JOB_SECONDS = 600


def test_token_source_follows_rays_order_and_never_returns_the_token(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token")
    file = tmp_path / "token"
    file.write_text("file-token")
    assert token_source({}, tmp_path) == "~/.ray/auth_token"
    assert token_source({"RAY_AUTH_TOKEN_PATH": str(file)}, tmp_path) == f"$RAY_AUTH_TOKEN_PATH ({file})"
    assert token_source({"RAY_AUTH_TOKEN": "env-token", "RAY_AUTH_TOKEN_PATH": str(file)}, tmp_path) == "$RAY_AUTH_TOKEN"
    # a path that names no token is no token (Ray does not fall back to ~/.ray then either)
    assert token_source({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, tmp_path) is None
    assert token_source({}, tmp_path / "elsewhere") is None
    for env in ({}, {"RAY_AUTH_TOKEN_PATH": str(file)}, {"RAY_AUTH_TOKEN": "env-token"}):
        assert not any(t in token_source(env, tmp_path) for t in ("home-token", "file-token", "env-token"))


def test_auth_plan_switches_to_token_mode_only_when_unset_a_token_exists_and_the_cluster_may_want_it(tmp_path):
    file = tmp_path / "token"
    file.write_text("secret-value-123")
    with_file = {"RAY_AUTH_TOKEN_PATH": str(file)}
    assert auth_plan(with_file, tmp_path, True)[0] is True and auth_plan(with_file, tmp_path, None)[0] is True
    assert auth_plan(with_file, tmp_path, False) == (False, "the cluster answers without a token")
    assert auth_plan({}, tmp_path, True)[0] is False and "no Ray authentication token" in auth_plan({}, tmp_path, True)[1]
    for mode in ("token", "disabled"):
        switch, how = auth_plan({"RAY_AUTH_MODE": mode, **with_file}, tmp_path, True)
        assert switch is False and f"RAY_AUTH_MODE={mode}" in how
    assert all("secret-value-123" not in auth_plan(env, tmp_path, True)[1]
               for env in ({"RAY_AUTH_TOKEN": "secret-value-123"}, with_file))


def test_wants_token_cannot_tell_without_a_server():
    assert wants_token("127.0.0.1:1") is None and wants_token("ray://127.0.0.1:1") is None
    assert wants_token("auto") is None


def test_job_address_prefers_the_flag_then_ray_address():
    assert job_address("ray://head:10001", {"RAY_ADDRESS": "10.0.0.1:6379"}) == "ray://head:10001"
    assert job_address(None, {"RAY_ADDRESS": "10.0.0.1:6379"}) == "10.0.0.1:6379"
    assert job_address(None, {}) is None and job_address("", {"RAY_ADDRESS": ""}) is None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    yield from local_cluster(tmp_path_factory.mktemp("rc"))
    print(f"\ncluster up and down in {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xrays")
    for row in fixture_rows():
        shutil.copy(FIXTURES / row["fixture"], root / row["fixture"])
    return root


@pytest.fixture(scope="module")
def expected(archive, tmp_path_factory) -> dict[str, dict]:
    """``predict --json`` on the same files, without Ray."""
    db = tmp_path_factory.mktemp("audit") / "predict.sqlite"
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(archive), "--json"], capture_output=True,
                            text=True, cwd=ROOT, timeout=600, env={**_clean_env(), "COVIDVIZ_DB_URL": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr
    return {line["file"]: line for line in map(json.loads, result.stdout.splitlines())}


def _clean_env() -> dict[str, str]:
    """This environment without Ray's variables (a developer's RAY_ADDRESS or token must not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


def _batch(cluster, archive: Path, out: Path, address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real command line, as a user on the cluster runs it (the driver's home has no ~/.ray either)."""
    home = out.parent / "home"
    home.mkdir(exist_ok=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "covidviz", "batch", str(archive), "--out", str(out),
                             "--address", address, "--workers", "1", "--batch-size", "4"],
                            capture_output=True, text=True, cwd=ROOT, timeout=JOB_SECONDS,
                            env={**_clean_env(), "HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE",
                                 "COVIDVIZ_DB_URL": f"sqlite:///{out.parent / 'audit.sqlite'}", **env})
    print(f"\nbatch --address {address}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    token = cluster.token_file.read_text()
    assert token not in result.stdout + result.stderr, "the token was printed"
    return result


def _assert_equal_to_predict(out: Path, expected: dict[str, dict]) -> None:
    results = pd.read_parquet(out)
    assert sorted(results["file"]) == sorted(expected) and len(expected) == len(fixture_rows())
    for row in results.itertuples():
        reference = expected[row.file]
        assert pd.isna(row.error) and row.label == reference["label"], row.file
        assert list(row.warnings) == reference["warnings"]
        for c in CLASSES:
            assert abs(row.probabilities[c] - reference["probabilities"][c]) <= 1e-6, (row.file, c)


@pytest.mark.parametrize("via", ["client", "native"])
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_batch_on_a_token_cluster_equals_predict(cluster, archive, expected, tmp_path, via):
    """Ray Client (``ray://``) with the token in a file named by ``RAY_AUTH_TOKEN_PATH``; the native address
    (``HOST:PORT``, as on a cluster node) with the token in ``RAY_AUTH_TOKEN``. RAY_AUTH_MODE is left unset,
    as a user leaves it: batch itself switches to token mode."""
    if via == "client":
        address, env = cluster.client_address, {"RAY_AUTH_TOKEN_PATH": str(cluster.token_file)}
    else:
        address, env = cluster.gcs_address, {"RAY_AUTH_TOKEN": cluster.token_file.read_text()}
    assert wants_token(address) is True  # the cluster refuses a call without the token
    out = tmp_path / "results.parquet"
    result = _batch(cluster, archive, out, address, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(expected)} inputs: {len(expected)} scored, 0 rejected" in result.stdout
    _assert_equal_to_predict(out, expected)
    # the driver records the results: through Ray Client it is a task on the cluster, natively this process
    audit_url = cluster.audit_url if via == "client" else f"sqlite:///{out.parent / 'audit.sqlite'}"
    records = load_records(audit_url)
    dispose(audit_url)
    mine = records[(records["interface"] == "batch") & records["input_sha256"].isin(pd.read_parquet(out)["sha256"])]
    assert len(mine) >= len(expected)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_a_connection_without_the_token_or_with_a_wrong_one_is_refused(cluster, archive, tmp_path):
    """Token authentication is really enforced: no token anywhere, or another token, and no job runs."""
    for name, env in (("none", {}), ("wrong", {"RAY_AUTH_TOKEN": "0" * 64})):
        out = tmp_path / name / "results.parquet"
        out.parent.mkdir()
        result = _batch(cluster, archive, out, cluster.gcs_address, env)
        assert result.returncode == 1, (name, result.stdout, result.stderr[-2000:])
        assert f"cannot connect to the Ray cluster at {cluster.gcs_address}" in result.stderr
        assert ("requires token authentication and no Ray authentication token found" in result.stderr) == (name == "none")
        assert not out.exists() or pd.read_parquet(out).empty


def _batch_records(url: str) -> int:
    """How many results ``batch`` has recorded in the audit database at ``url`` (0 before it exists)."""
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    records = load_records(url)
    dispose(url)
    return int((records["interface"] == "batch").sum())


def _ray_job(cluster, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real ``ray job`` CLI against the head's dashboard, from a home with no ``~/.ray``; the token never in
    its output."""
    home = cluster.root / "submitter-home"
    home.mkdir(exist_ok=True)
    started = time.monotonic()
    result = subprocess.run([str(RAY), "job", *args[:1], "--address", cluster.dashboard_address, *args[1:]],
                            capture_output=True, text=True, cwd=ROOT, timeout=JOB_SECONDS,
                            env={**_clean_env(), "HOME": str(home), **env})
    print(f"\nray job {args[0]}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    assert cluster.token_file.read_text() not in result.stdout + result.stderr, "the token was printed"
    return result


@pytest.mark.slow
def test_ray_job_submit_of_batch_equals_predict_and_needs_the_token(cluster, archive, expected, tmp_path):
    """README's command: ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=...`` and ``ray job submit`` of ``python -m
    covidviz batch`` to the head's dashboard; the driver runs on the head (``RAY_ADDRESS`` set by Ray's job
    manager), finds the project by the nodes' ``PYTHONPATH`` on the shared filesystem, so no ``--working-dir``."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.token_file)}
    out = tmp_path / "results.parquet"
    entrypoint = ["--", "python", "-m", "covidviz", "batch", str(archive), "--out", str(out), "--workers", "1",
                  "--batch-size", "4"]
    for name, env in (("none", {}), ("wrong", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})):
        refused = _ray_job(cluster, ["submit", "--submission-id", f"batch-{name}-token", *entrypoint], env)
        assert refused.returncode != 0 and "AuthenticationError" in refused.stderr, (name, refused.stderr[-2000:])
        assert ("Missing authentication token" in refused.stderr) == (name == "none"), refused.stderr[-2000:]
    assert not out.exists()

    before = _batch_records(cluster.audit_url)
    submitted = _ray_job(cluster, ["submit", "--submission-id", "batch-job", *entrypoint], auth)
    status = _ray_job(cluster, ["status", "batch-job"], auth)
    logs = _ray_job(cluster, ["logs", "batch-job"], auth)
    assert submitted.returncode == 0, (submitted.stdout[-3000:], submitted.stderr[-3000:])
    assert "Job 'batch-job' succeeded" in status.stdout, status.stdout  # JobStatus.SUCCEEDED, as the CLI says it
    assert f"{len(expected)} inputs: {len(expected)} scored, 0 rejected" in logs.stdout
    driver_log = cluster.temp_dir / "session_latest" / "logs" / "job-driver-batch-job.log"  # what `ray job logs` reads
    assert cluster.token_file.read_text() not in driver_log.read_text(), "the token is in the job's log"
    _assert_equal_to_predict(out, expected)
    # the job's driver is a process on the head: it records the results in the nodes' audit database
    assert _batch_records(cluster.audit_url) - before == len(expected)
    listed = _ray_job(cluster, ["list"], auth)
    assert "status=<JobStatus.SUCCEEDED" in listed.stdout and "submission_id='batch-job'" in listed.stdout
    assert "-token" not in listed.stdout  # the refused submissions never became jobs
