"""The server as a hospital would run it: HTTPS with its own certificate, secrets that appear in no log and no
page, and, without any configuration, a local server that a deep link reaches cleanly."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser_support import requires_chromium
from tests.conftest import ROOT
from tests.oidc_support import (
    free_port,
    running_dashboard,
    running_provider,
    self_signed_certificate,
    sign_in,
    stop,
    wait_for,
)

pytest_plugins = ["tests.browser_support"]  # its fixtures

pytestmark = [pytest.mark.slow, requires_chromium]
PACS_PASSWORD = "pacs-password-never-shown-4f1c"
DB_PASSWORD = "db-password-never-shown-9b2e"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_fresh_local_server_listens_on_loopback_and_deep_links_cleanly(browser, tmp_path):
    """``make app``'s command on a fresh machine: 127.0.0.1 only, single-user mode said on the page, and a deep
    link as the very first request opens its page without a "Page not found" dialog."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "covidviz.ui.serve", "--server.port", str(port)],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", "streamlit", log, process)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/confusion-matrices")
        page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=60_000)
        assert page.locator("[role=dialog]").count() == 0
        expect(page.get_by_text("Single-user local mode")).to_have_count(1)
        page.close()
    finally:
        stop(process)


def test_https_sign_in_and_no_secret_in_any_log_or_page(browser, tmp_path):
    """Streamlit serving TLS itself (server.sslCertFile/sslKeyFile) with a throw-away certificate; a user with
    every role visits every page while the PACS and the database are unreachable (so their errors are on
    screen and in the log), and none of the four secrets appears in either."""
    from covidviz.ui.navigation import PAGES
    cert, key = self_signed_certificate(tmp_path)
    env = {"COVIDVIZ_DICOMWEB_URL": "http://127.0.0.1:9/dicom-web", "COVIDVIZ_DICOMWEB_USER": "covidviz",
           "COVIDVIZ_DICOMWEB_PASSWORD": PACS_PASSWORD}
    with running_provider(tmp_path) as provider, running_dashboard(
            tmp_path, provider, scheme="https", env=env,
            extra_args=("--server.sslCertFile", str(cert), "--server.sslKeyFile", str(key))) as server:
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{server.url}/_stcore/health", context=context, timeout=10) as response:
            assert response.status == 200  # HTTPS, verified against the fixture's certificate
        with pytest.raises(OSError):
            urllib.request.urlopen(server.url.replace("https", "http") + "/_stcore/health", timeout=5)
        browser_context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
        try:
            page = browser_context.new_page()
            sign_in(page, server, "chief-1")
            assert page.url.startswith("https://")
            html = [page.content()]
            for spec in PAGES:
                page.goto(f"{server.url}/{'' if spec.default else spec.url_path}")
                page.locator("[data-testid=stMain] h1").first.wait_for(timeout=60_000)
                page.wait_for_timeout(2000)
                assert page.locator("[role=dialog]").count() == 0, spec.url_path
                assert page.get_by_text("Your role does not allow").count() == 0, spec.url_path
                html.append(page.content())
        finally:
            browser_context.close()
        logs = server.log.read_text() + "".join(html)
    secrets = {"client secret": server.client_secret, "cookie secret": server.cookie_secret,
               "PACS password": PACS_PASSWORD}
    for name, value in secrets.items():
        assert value not in logs, f"the {name} leaked"
    assert "PACS" in "".join(html)  # the pages did render


def test_database_password_appears_in_no_log_or_page(browser, tmp_path):
    """An unreachable PostgreSQL named with a password: the Audit page and the log say it failed, with the
    password masked."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")},
           "COVIDVIZ_DB_URL": f"postgresql+psycopg://covidviz:{DB_PASSWORD}@127.0.0.1:9/audit"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "covidviz.ui.serve", "--server.port", str(port)],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", "streamlit", log, process)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/audit")
        page.get_by_text("could not be read").wait_for(timeout=60_000)
        html = page.content()
        page.close()
    finally:
        stop(process)
    assert DB_PASSWORD not in html and DB_PASSWORD not in log.read_text()
    assert "***" in html  # the URL is shown, masked
