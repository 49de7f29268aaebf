"""Sign-in, roles and the audit trail's user, in Chromium against a real OpenID Connect provider
(oidc-provider-mock on 127.0.0.1) and a dashboard started as ``make app`` starts it."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from covidviz.ui.navigation import PAGES
from tests.browser_support import requires_chromium
from tests.conftest import FIXTURES, fixture_rows
from tests.oidc_support import audit_rows, running_dashboard, running_provider, sign_in

pytest_plugins = ["tests.browser_support"]  # its fixtures

pytestmark = [pytest.mark.slow, requires_chromium]
IDLE_MINUTES = 0.5  # short enough to watch a session time out, long enough for every other step
SIGN_IN_TEXT = "Sign in with your hospital account"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with running_provider(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, provider):
    with running_dashboard(tmp_path_factory.mktemp("dashboard"), provider, idle_minutes=IDLE_MINUTES) as running:
        yield running


@pytest.fixture()
def context(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context
    context.close()


def _menu(page) -> str:
    return page.locator("[data-testid=stSidebarNav]").inner_text()


def test_unsigned_browser_gets_nothing_of_any_page(context, server):
    page = context.new_page()
    for spec in PAGES:
        page.goto(f"{server.url}/{spec.url_path}")
        page.get_by_text(SIGN_IN_TEXT).wait_for(timeout=60_000)
        page.wait_for_timeout(500)  # whatever else would render has had its chance
        text = page.locator("[data-testid=stApp]").inner_text()
        assert spec.title not in text, spec.url_path
        assert page.locator("[data-testid=stSidebarNav]").count() == 0
        assert page.locator("[data-testid=stDownloadButton]").count() == 0
        assert "Audit log" not in text and "PACS" not in text


def test_reader_signs_in_and_cannot_open_the_audit_log_even_by_url(context, server):
    page = context.new_page()
    sign_in(page, server, "reader-1")
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)  # Diagnose: a reader's page
    page.locator("input[type=file]").set_input_files(str(FIXTURES / fixture_rows()[0]["fixture"]))
    page.locator("p", has_text="Model output:").first.wait_for(timeout=90_000)
    predictions = audit_rows(server, "prediction")
    assert set(predictions["user_sub"]) == {"reader-1"}  # the reading's record names who read it
    assert set(predictions["user_issuer"]) == {server.provider.url} and predictions["os_user"].isna().all()
    menu = _menu(page)
    assert "Diagnose" in menu and "Confusion matrices" in menu
    assert "Audit log" not in menu and "PACS worklist" not in menu  # hidden from the navigation
    page.goto(f"{server.url}/audit")
    page.get_by_text("Your role does not allow Audit log").wait_for(timeout=60_000)
    assert page.locator("[data-testid=stDataFrame]").count() == 0
    assert page.get_by_text("Records (CSV)").count() == 0
    page.goto(f"{server.url}/pacs-worklist")
    page.get_by_text("Your role does not allow PACS worklist").wait_for(timeout=60_000)
    refused = audit_rows(server, "access_refused", least=2)
    mine = refused[refused["user_sub"] == "reader-1"]
    assert set(mine["resource"]) >= {"audit", "pacs-worklist"}
    assert set(mine["user_issuer"]) == {server.provider.url}
    signed_in = audit_rows(server, "sign_in")
    assert "reader-1" in set(signed_in["user_sub"])


def test_admin_opens_the_audit_log_and_sees_who_was_refused(browser, context, server):
    other = browser.new_context()
    try:  # a user without any role: only the model card, and a refusal for the rest
        stranger = other.new_page()
        sign_in(stranger, server, "nobody-1")
        stranger.get_by_text("Your role opens these pages").wait_for(timeout=60_000)
        card = stranger.get_by_role("link", name="About / model card")  # drawn after the line above: wait for it
        card.wait_for(timeout=60_000)
        expect(card).to_have_count(1)
        assert "Audit log" not in stranger.locator("[data-testid=stSidebar]").inner_text()
        stranger.goto(f"{server.url}/audit")
        stranger.get_by_text("Your role does not allow Audit log").wait_for(timeout=60_000)
    finally:
        other.close()
    page = context.new_page()
    sign_in(page, server, "admin-1")
    assert "Audit log" in _menu(page) and "Diagnose" not in _menu(page)  # roles are separate
    page.goto(f"{server.url}/audit")
    page.get_by_role("heading", name="Audit log").wait_for(timeout=60_000)
    page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=60_000)
    assert page.get_by_text("Your role does not allow").count() == 0
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Records (CSV)").click()
    csv = open(download.value.path()).read()
    refusal = [line for line in csv.splitlines() if "access_refused" in line and ",audit," in line]
    assert any("nobody-1" in line for line in refusal)  # the refusal names the user who was refused
    assert "admin-1" in set(audit_rows(server, "sign_in", least=2)["user_sub"])


def test_sign_out_is_recorded_and_ends_the_session(context, server):
    """Sign out, and follow where it leads: the dashboard records it and sends the browser (through its own
    /auth/logout, which drops the identity cookie) to the provider's end-session page, which returns it to the
    dashboard's sign-in screen. The test navigates nowhere itself before that: a page reloaded before the
    click's rerun has run would cut the rerun off, the sign-out unrecorded and the reader still signed in."""
    page = context.new_page()
    sign_in(page, server, "reader-1")
    page.get_by_role("button", name="Sign out").click()
    end_session = page.get_by_role("button", name="End session")  # the provider's own sign-out page
    end_session.wait_for(timeout=60_000)
    end_session.click()
    page.wait_for_url(f"{server.url}/**", timeout=60_000)
    signed_out = page.get_by_text(SIGN_IN_TEXT)
    signed_out.wait_for(timeout=60_000)
    assert "reader-1" in set(audit_rows(server, "sign_out")["user_sub"])
    assert "_streamlit_user" not in {cookie["name"] for cookie in context.cookies()}
    page.goto(server.url)  # a fresh page load is not signed in either
    signed_out.wait_for(timeout=60_000)


def _identity_cookie(context) -> dict:
    return next(c for c in context.cookies() if c["name"] == "_streamlit_user")


def test_tampered_identity_cookie_is_refused(browser, context, server):
    """A reader's own cookie with one character changed, and an administrator's claims signed with a secret
    that is not the server's: both are no sign-in at all."""
    from itsdangerous import URLSafeTimedSerializer
    page = context.new_page()
    sign_in(page, server, "reader-1")
    cookie = _identity_cookie(context)
    value = cookie["value"]
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    claims = {"sub": "reader-1", "iss": server.provider.url, "groups": ["covidviz-admin"], "iat": int(time.time()),
              "origin": server.url, "is_logged_in": True, "provider": "default"}
    forged = URLSafeTimedSerializer("not-the-server-secret-0123456789", salt="_streamlit_user").dumps(
        json.dumps(claims))
    for bad in (flipped, forged):
        other = browser.new_context()
        try:
            other.add_cookies([{**cookie, "value": bad}])
            forged_page = other.new_page()
            forged_page.goto(f"{server.url}/audit")
            forged_page.get_by_text(SIGN_IN_TEXT).wait_for(timeout=60_000)
            assert forged_page.get_by_role("heading", name="Audit log").count() == 0
        finally:
            other.close()
    rows = audit_rows(server, "access_refused", least=2)
    assert (rows["resource"] == "identity cookie").sum() >= 2
    assert rows.loc[rows["resource"] == "identity cookie", "user_sub"].isna().all()  # its claims are not trusted


def test_expired_identity_cookies_are_refused(browser, context, server):
    """Signed with the right secret but too old: by the sign-in's own age (iat past session_max_hours) and by
    the signature's timestamp (past Streamlit's cookie lifetime)."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer
    page = context.new_page()
    sign_in(page, server, "reader-1")
    cookie = _identity_cookie(context)
    claims = {"sub": "reader-1", "iss": server.provider.url, "groups": ["covidviz-reader"],
              "iat": int(time.time()) - 13 * 3600,
              "origin": server.url, "is_logged_in": True, "provider": "default"}
    fresh_signature_old_sign_in = URLSafeTimedSerializer(server.cookie_secret, salt="_streamlit_user").dumps(
        json.dumps(claims))

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 40 * 86400

    claims["iat"] = int(time.time())
    old_signature = URLSafeTimedSerializer(server.cookie_secret, salt="_streamlit_user", signer=LongAgo).dumps(
        json.dumps(claims))
    for value, note in ((fresh_signature_old_sign_in, "more than 12 hours old"), (old_signature, None)):
        other = browser.new_context()
        try:
            other.add_cookies([{**cookie, "value": value}])
            expired = other.new_page()
            expired.goto(f"{server.url}/confusion-matrices")
            expired.get_by_text(SIGN_IN_TEXT).wait_for(timeout=60_000)
            if note:
                expired.get_by_text(note).wait_for(timeout=10_000)
            assert expired.locator(".js-plotly-plot").count() == 0
        finally:
            other.close()
    timeouts = audit_rows(server, "session_timeout")
    assert "reader-1" in set(timeouts["user_sub"])


def test_idle_session_times_out(context, server):
    page = context.new_page()
    sign_in(page, server, "reader-1")
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)
    page.get_by_text("without activity").wait_for(timeout=(IDLE_MINUTES * 60 + 40) * 1000)  # no click needed
    page.get_by_role("button", name="Sign in").wait_for(timeout=10_000)
    assert page.locator("[data-testid=stSidebarNav]").count() == 0
    page.reload()  # a reload does not restart the clock: the sign-in itself has ended
    page.get_by_text(SIGN_IN_TEXT).wait_for(timeout=60_000)
    assert "reader-1" in set(audit_rows(server, "session_timeout", least=2)["user_sub"])


def test_a_restart_keeps_ended_sign_ins_ended_and_open_ones_open(browser, provider, tmp_path):
    """Which sign-ins ended, and when each was last active, is kept in the audit database: after a restart
    the cookie of a reader who signed out is refused, a sign-in in use carries on (not recorded as a new
    sign-in), and one left idle keeps its idle clock and times out on time."""
    idle_minutes = 1.0  # room for two sign-ins, a sign-out and a restart inside it
    contexts = {sub: browser.new_context() for sub in ("admin-1", "chief-1", "reader-1")}
    try:
        with running_dashboard(tmp_path, provider, idle_minutes=idle_minutes) as first:
            pages = {sub: context.new_page() for sub, context in contexts.items()}
            sign_in(pages["admin-1"], first, "admin-1")  # then left: no tab open to time it out
            idle_since = time.monotonic()
            idle_cookie = _identity_cookie(contexts["admin-1"])
            contexts.pop("admin-1").close()
            sign_in(pages["chief-1"], first, "chief-1")
            sign_in(pages["reader-1"], first, "reader-1")
            signed_out_cookie = _identity_cookie(contexts["reader-1"])
            pages["reader-1"].get_by_role("button", name="Sign out").click()
            pages["reader-1"].get_by_role("button", name="End session").wait_for(timeout=60_000)
            assert "reader-1" in set(audit_rows(first, "sign_out")["user_sub"])
        with running_dashboard(tmp_path, provider, idle_minutes=idle_minutes, again=first) as second:
            pages["chief-1"].goto(second.url)
            pages["chief-1"].get_by_text("Signed in as").first.wait_for(timeout=60_000)
            assert pages["chief-1"].get_by_role("button", name="Sign in").count() == 0
            for cookie, reason in ((signed_out_cookie, "Your session has ended"), (idle_cookie, "without activity")):
                if reason == "without activity":
                    time.sleep(max(0.0, idle_since + idle_minutes * 60 + 3 - time.monotonic()))
                returning = browser.new_context()
                try:
                    returning.add_cookies([cookie])
                    page = returning.new_page()
                    page.goto(f"{second.url}/audit")
                    page.get_by_text(SIGN_IN_TEXT).wait_for(timeout=60_000)
                    page.get_by_text(reason).wait_for(timeout=10_000)
                    assert page.get_by_role("heading", name="Audit log").count() == 0
                finally:
                    returning.close()
            assert "admin-1" in set(audit_rows(second, "session_timeout")["user_sub"])
            signed_in = audit_rows(second, "sign_in", least=3)
            assert (signed_in["user_sub"] == "chief-1").sum() == 1  # carried on across the restart
    finally:
        for context in contexts.values():
            context.close()
