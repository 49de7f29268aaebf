"""A reader records a verdict on Diagnose in a real browser and sees it counted on Site performance."""

from __future__ import annotations

import hashlib
import os

import pytest

from covidviz.audit.verdict_store import current_verdicts, load_verdicts
from tests.browser_support import requires_chromium
from tests.conftest import FIXTURES, fixture_rows

pytest_plugins = ["tests.browser_support"]  # its fixtures (one browser for the session)

pytestmark = [pytest.mark.slow, requires_chromium]


def test_a_verdict_recorded_on_diagnose_is_counted_on_site_performance(page, server_url):
    fixture = FIXTURES / fixture_rows()[1]["fixture"]
    sha = hashlib.sha256(fixture.read_bytes()).hexdigest()
    page.goto(server_url)
    page.locator("input[type=file]").wait_for(state="attached", timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(fixture))
    form = page.locator("[data-testid=stForm]").first
    form.wait_for(timeout=90_000)
    form.get_by_text("Not assessable", exact=True).click()
    form.get_by_role("button", name="Record verdict").click()
    page.get_by_text("Verdict recorded: Not assessable").wait_for(timeout=30_000)

    url = os.environ["COVIDVIZ_DB_URL"]  # the server's database (tests/conftest.py)
    mine = load_verdicts(url)
    mine = mine[mine["input_sha256"] == sha]
    assert mine["verdict"].tolist()[-1] == "not_assessable" and mine["reader"].iloc[-1].startswith("browser:")
    assert mine["origin"].iloc[-1] == "dashboard" and mine["calibration"].iloc[-1] == "shipped"

    page.goto(f"{server_url}/site-performance")
    tile = page.locator("[data-testid=stMetric]", has_text="Verdicts counted")
    tile.wait_for(timeout=90_000)
    shown = int(tile.locator("[data-testid=stMetricValue]").inner_text().replace(",", ""))
    assert shown == len(current_verdicts(load_verdicts(url))) >= 1
    page.get_by_text("Not yet meaningful, fewer than 30 verdicts").first.wait_for(timeout=30_000)
