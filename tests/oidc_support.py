"""A real OpenID Connect provider for the tests, and a dashboard that signs in through it.

The provider is ``oidc-provider-mock`` (PyPI, a Flask app on Authlib): real discovery, authorization, token
and end-session endpoints, RS256-signed ID tokens, and a sign-in form that accepts any subject. It runs as
its own process on 127.0.0.1 on a free port, with the test users (their ``groups`` claims decide their roles)
predefined. The dashboard is started by ``python -m covidviz.ui.serve`` (what ``make app`` runs) with a
throw-away secrets file naming the provider.

Without the package the tests skip, except under CI (``CI`` set), where they fail; ``make test`` installs it
from requirements.txt.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

USERS = {  # sub -> claims; the groups are the default role values (covidviz.ui.access)
    "reader-1": {"name": "Rita Reader", "email": "rita@hospital.example", "groups": ["covidviz-reader"]},
    "admin-1": {"name": "Ada Admin", "email": "ada@hospital.example", "groups": ["/covidviz-admin"]},
    "nobody-1": {"name": "No Roles", "email": "nobody@hospital.example", "groups": []},
    "chief-1": {"name": "Chief Everything", "email": "chief@hospital.example",
                "groups": ["covidviz-reader", "covidviz-pacs", "covidviz-admin"]},
}


def require_oidc_provider() -> None:
    if importlib.util.find_spec("oidc_provider_mock") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs oidc-provider-mock (requirements.txt) for the sign-in tests")
        pytest.skip("oidc-provider-mock is not installed (make test installs requirements.txt)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, what: str, log: Path, process: subprocess.Popen, seconds: float = 90,
             context=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{what} did not start: {log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Provider:
    url: str  # also the issuer

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"


@contextmanager
def running_provider(folder: Path) -> Iterator[Provider]:
    require_oidc_provider()
    port = free_port()
    log = folder / "oidc-provider.log"
    users = [arg for sub, claims in USERS.items() for arg in ("--user-claims", json.dumps({"sub": sub, **claims}))]
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                    str(port), *users], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "NO_COLOR": "1"})
    provider = Provider(f"http://127.0.0.1:{port}")
    try:
        wait_for(provider.metadata_url, "oidc-provider-mock", log, process)
        yield provider
    finally:
        stop(process)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 made by Debian's openssl (certificate, key)."""
    import shutil
    if shutil.which("openssl") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs openssl (Makefile SYSTEM_PACKAGES) for the TLS test")
        pytest.skip("openssl is not installed (make test installs it)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass(frozen=True)
class SignInServer:
    """A dashboard that requires sign-in, and what the tests need to know about it."""

    url: str
    provider: Provider
    cookie_secret: str
    client_secret: str
    log: Path
    db_url: str


def secrets_toml(port: int, provider: Provider, cookie_secret: str, client_secret: str, idle_minutes: float,
                 scheme: str = "http") -> str:
    return f"""
[auth]
redirect_uri = "{scheme}://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{cookie_secret}"
client_id = "covidviz-test"
client_secret = "{client_secret}"
server_metadata_url = "{provider.metadata_url}"

[access]
idle_timeout_minutes = {idle_minutes}
"""


@contextmanager
def running_dashboard(folder: Path, provider: Provider, idle_minutes: float = 1.0,
                      address: str = "127.0.0.1", extra_args: tuple[str, ...] = (), scheme: str = "http",
                      env: dict[str, str] | None = None, again: SignInServer | None = None) -> Iterator[SignInServer]:
    """``python -m covidviz.ui.serve`` with sign-in through ``provider`` and its own audit database.

    ``again``: the same dashboard restarted (a stopped one's port, secrets and database, so its cookies are
    still validly signed); ``folder`` must be the one it ran in."""
    port = int(again.url.rsplit(":", 1)[1]) if again else free_port()
    if again:
        cookie_secret, client_secret = again.cookie_secret, again.client_secret
    else:
        cookie_secret, client_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    secrets_file = folder / "secrets.toml"
    secrets_file.write_text(secrets_toml(port, provider, cookie_secret, client_secret, idle_minutes, scheme))
    log = folder / "streamlit.log"
    db_url = f"sqlite:///{folder / 'audit.sqlite'}"
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "COVIDVIZ_DB_URL": db_url, **(env or {})}
    with log.open("a" if again else "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "covidviz.ui.serve", "--server.address", address, "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false", "--secrets.files",
             str(secrets_file), *extra_args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=environment)
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        context = None
        if scheme == "https":
            import ssl
            context = ssl._create_unverified_context()  # the fixture's own throw-away certificate
        wait_for(f"{url}/_stcore/health", "streamlit", log, process, context=context)
        yield SignInServer(url, provider, cookie_secret, client_secret, log, db_url)
    finally:
        stop(process)


def sign_in(page, server: SignInServer, sub: str) -> None:
    """Through the provider's own pages, as a person would: the dashboard's button, then the user."""
    page.goto(server.url)
    page.get_by_role("button", name="Sign in").click(timeout=60_000)
    page.get_by_role("button", name=sub, exact=True).click(timeout=60_000)  # the provider's sign-in form
    page.get_by_text("Signed in as").first.wait_for(timeout=60_000)


def audit_rows(server: SignInServer, kind: str | None = None, seconds: float = 20, least: int = 1):
    """The server's audit records (written by its background writer), waiting for at least ``least``."""
    from covidviz.audit.db import dispose
    from covidviz.audit.query import AuditFilter, load_records
    deadline = time.monotonic() + seconds
    while True:
        frame = load_records(server.db_url, AuditFilter(kinds=(kind,) if kind else ()))
        dispose(server.db_url)
        if len(frame) >= least or time.monotonic() > deadline:
            return frame
        time.sleep(0.5)
