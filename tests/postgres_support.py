"""A real PostgreSQL for the tests: Debian's server binaries, a throw-away data directory, 127.0.0.1 on a free
port. initdb and postgres refuse to run as root, so as root they run as the ``postgres`` system user.

Absent binaries skip the tests on a developer's machine and fail them under CI (``CI=true``), where the
Makefile installs the ``postgresql`` package."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("COVIDVIZ_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "covidviz"


def _missing_reason() -> str | None:
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return f"PostgreSQL server binaries not found in {PG_BIN} (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def require_postgres() -> None:
    """Skip without PostgreSQL, except under CI, where its absence is a failure."""
    reason = _missing_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs PostgreSQL for the audit tests: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], **kwargs) -> None:
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stdout}\n{result.stderr}")


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server for the duration of the block; yields a psycopg SQLAlchemy URL to its ``postgres``
    database (superuser, trust authentication, reachable only on 127.0.0.1)."""
    require_postgres()
    home = Path(tempfile.mkdtemp(prefix="covidviz-pg-"))
    data, sockets = home / "data", home / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        server = pwd.getpwnam("postgres")
        for path in (home, sockets):
            os.chown(path, server.pw_uid, server.pw_gid)
    port = _free_port()
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
              "--no-sync", "--locale=C"])
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60",
              "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off", "start"])
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                             "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg
    name = f"audit_{uuid.uuid4().hex[:10]}"
    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server for one test module (see :func:`running_postgres`)."""
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database of each kind, forgotten by the process's engine cache afterwards."""
    from covidviz.audit.db import dispose
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"))
    yield url
    dispose(url)
