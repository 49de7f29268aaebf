"""Roles from ID-token claims, the closed-by-default rules, the page registry, and the audit trail's user:
pure parts directly, the start-up refusal as ``make app`` runs it, the migration on a real database."""

from __future__ import annotations

import getpass
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text

from covidviz.audit.db import dispose, migrate
from covidviz.audit.events import AuditEvent
from covidviz.audit.identity import Actor, act_as, current_actor
from covidviz.audit.query import AuditFilter, load_records
from covidviz.audit.recorder import write_events
from covidviz.ui.access import ADMIN, EVERYONE, PACS, READER, ROLES, AccessConfig, roles_from_claims
from covidviz.ui.exposure import LOCAL, SIGN_IN, TRUSTED, TRUSTED_NETWORK_ENV, is_loopback, mode
from covidviz.ui.navigation import PAGES, PageSpec, allowed_pages
from tests.conftest import ROOT

AUTH = {"redirect_uri": "https://covidviz.hospital.example/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "covidviz", "client_secret": "s",
        "server_metadata_url": "https://idp/.well-known/openid-configuration"}


# --- roles ---------------------------------------------------------------------------------------------------

def test_default_groups_map_to_roles_keycloak_paths_included():
    config = AccessConfig()
    assert roles_from_claims({"sub": "a", "groups": ["covidviz-reader", "other"]}, config) == {READER}
    assert roles_from_claims({"sub": "a", "groups": ["/covidviz-admin", "/covidviz-pacs"]}, config) == {ADMIN, PACS}
    assert roles_from_claims({"sub": "a"}, config) == frozenset()
    assert roles_from_claims({"sub": "a", "groups": "covidviz-reader covidviz-pacs"}, config) == {READER, PACS}


def test_entra_app_roles_and_group_ids_by_configuration():
    config = AccessConfig.from_mapping({"claims": ["roles", "groups"], "roles": {
        "reader": ["CovidViz.Reader"], "admin": ["9c1e0f2a-1111-4c2b-9a00-5d2b8c0e7a10"]}})
    assert roles_from_claims({"sub": "x", "roles": ["CovidViz.Reader"]}, config) == {READER}
    assert roles_from_claims({"sub": "x", "groups": ["9c1e0f2a-1111-4c2b-9a00-5d2b8c0e7a10"]}, config) == {ADMIN}
    assert roles_from_claims({"sub": "x", "roles": ["covidviz-reader"]}, config) == frozenset()  # replaced


def test_allow_list_by_subject_or_verified_email():
    config = AccessConfig.from_mapping({"users": {"Ada@Hospital.example": ["admin"], "sub-42": ["pacs"]}})
    assert roles_from_claims({"sub": "1", "email": "ada@hospital.example"}, config) == {ADMIN}
    assert roles_from_claims({"sub": "1", "email": "ada@hospital.example", "email_verified": False}, config) == set()
    assert roles_from_claims({"sub": "sub-42"}, config) == {PACS}


def test_configuration_mistakes_are_errors_not_silent_lockouts():
    with pytest.raises(ValueError, match="unknown roles"):
        AccessConfig.from_mapping({"roles": {"admins": ["x"]}})
    with pytest.raises(ValueError, match="unknown roles"):
        AccessConfig.from_mapping({"users": {"a@b": ["superuser"]}})
    with pytest.raises(ValueError, match="positive"):
        AccessConfig.from_mapping({"idle_timeout_minutes": 0})
    assert AccessConfig.from_mapping(None).idle_minutes == 30


# --- pages -----------------------------------------------------------------------------------------------------

def test_every_page_needs_a_known_role_and_the_audit_log_is_admin_only():
    assert {p.role for p in PAGES} <= {*ROLES, EVERYONE}
    assert len({p.url_path for p in PAGES}) == len(PAGES)
    assert all((ROOT / p.script).is_file() for p in PAGES)
    assert {p.url_path for p in PAGES if p.role == ADMIN} >= {"audit"}
    assert "audit" not in {p.url_path for p in allowed_pages({READER, PACS})}
    assert "pacs-worklist" not in {p.url_path for p in allowed_pages({READER})}
    assert [p.url_path for p in allowed_pages(())] == ["model-card"]


def test_an_admin_only_page_is_one_line():
    extra = PageSpec("app_pages/site_performance.py", "Site performance", "Operations", ADMIN, "site-performance",
                     ":material/speed:")
    pages = (*PAGES, extra)
    assert extra in allowed_pages({ADMIN}, pages) and extra not in allowed_pages({READER, PACS}, pages)


# --- closed by default -----------------------------------------------------------------------------------------

def test_loopback_only_without_sign_in():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback(None) and not is_loopback("covidviz.example")
    assert mode("127.0.0.1", None, {}) == LOCAL
    assert mode(None, None, {}) == LOCAL  # a browser on this machine, wherever the server listens
    with pytest.raises(PermissionError, match=TRUSTED_NETWORK_ENV):
        mode("0.0.0.0", None, {})
    with pytest.raises(PermissionError, match=TRUSTED_NETWORK_ENV):
        mode(None, None, {}, client_ip="10.0.0.7")  # started around the launcher, reached from elsewhere
    assert mode("0.0.0.0", None, {TRUSTED_NETWORK_ENV: "1"}) == TRUSTED
    assert mode("0.0.0.0", AUTH, {}) == SIGN_IN
    with pytest.raises(ValueError, match="cookie_secret"):
        mode("0.0.0.0", {k: v for k, v in AUTH.items() if k != "cookie_secret"}, {})


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_") and k != TRUSTED_NETWORK_ENV}
    return subprocess.run([sys.executable, "-c", "from covidviz.ui.serve import check; import sys; "
                           "print(check(sys.argv[1:]))", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**environment, **env})


def test_make_app_refuses_another_address_without_sign_in_and_names_the_setting():
    for args, env in ((("--server.address", "0.0.0.0"), {}), ((), {"STREAMLIT_SERVER_ADDRESS": "192.0.2.10"})):
        result = subprocess.run([sys.executable, "-m", "covidviz.ui.serve", *args], capture_output=True,
                                text=True, cwd=ROOT, timeout=120,
                                env={**{k: v for k, v in os.environ.items() if k != TRUSTED_NETWORK_ENV}, **env})
        assert result.returncode == 2
        assert TRUSTED_NETWORK_ENV in result.stderr and "without sign-in" in result.stderr
    allowed = _serve("--server.address=0.0.0.0", **{TRUSTED_NETWORK_ENV: "1"})
    assert allowed.returncode == 0, allowed.stderr


def test_make_app_with_sign_in_may_listen_anywhere(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("[auth]\n" + "".join(f'{k} = "{v}"\n' for k, v in AUTH.items()))
    assert _serve("--server.address", "0.0.0.0", "--secrets.files", str(secrets)).returncode == 0
    secrets.write_text('[auth]\nredirect_uri = "https://x/oauth2callback"\n')  # sign-in meant, but incomplete
    broken = _serve("--server.address", "127.0.0.1", "--secrets.files", str(secrets))
    assert broken.returncode != 0 and "cookie_secret" in broken.stderr


# --- the audit trail's user --------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    yield url
    dispose(url)


def test_records_name_the_os_user_and_host_unless_a_user_is_signed_in():
    plain = AuditEvent(kind="prediction", interface="cli", input_sha256=None)
    assert plain.actor == Actor(os_user=getpass.getuser(), host=socket.gethostname())
    seen = {}

    def dashboard_thread() -> None:
        act_as(Actor(sub="u-1", issuer="https://idp"))
        seen["event"] = AuditEvent(kind="sign_in", interface="dashboard", input_sha256=None).as_row()

    thread = threading.Thread(target=dashboard_thread)
    thread.start()
    thread.join()
    assert seen["event"]["user_sub"] == "u-1" and seen["event"]["user_issuer"] == "https://idp"
    assert seen["event"]["os_user"] is None
    assert current_actor().os_user == getpass.getuser()  # another thread's sign-in is not this one's


def test_migration_adds_user_columns_and_old_records_keep_none(sqlite_url):
    from alembic import command

    from covidviz.audit.db import alembic_config, get_engine
    engine = get_engine(sqlite_url)
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_records (created_at, kind, interface, app_version, warnings) "
                                "VALUES ('2024-01-01 00:00:00', 'prediction', 'cli', '0.0.1', '[]')"))
    dispose(sqlite_url)
    migrate(sqlite_url)
    write_events([AuditEvent(kind="access_refused", interface="dashboard", input_sha256=None, resource="audit",
                             actor=Actor(sub="reader-1", issuer="https://idp"))], sqlite_url)
    write_events([AuditEvent(kind="prediction", interface="batch", input_sha256=None)], sqlite_url)
    frame = load_records(sqlite_url).sort_values("id")
    old = frame.iloc[0]
    assert all(old[c] is None or old[c] != old[c] for c in ("user", "user_sub", "user_issuer", "os_user", "host"))
    assert frame["user"].tolist()[1:] == ["reader-1", f"{getpass.getuser()}@{socket.gethostname()}"]
    assert load_records(sqlite_url, AuditFilter(users=("reader-1",)))["resource"].tolist() == ["audit"]
    assert len(load_records(sqlite_url, AuditFilter(users=(getpass.getuser(),)))) == 1
    assert len(load_records(sqlite_url, AuditFilter(users=(f"{getpass.getuser()}@{socket.gethostname()}",)))) == 1
    command.downgrade(alembic_config(get_engine(sqlite_url)), "0001")  # reversible
    dispose(sqlite_url)


def test_audit_cli_filters_by_user(sqlite_url, capsys):
    from covidviz.tools.cli import main
    write_events([AuditEvent(kind="access_refused", interface="dashboard", input_sha256=None, resource="audit",
                             actor=Actor(sub="reader-1", issuer="https://idp")),
                  AuditEvent(kind="sign_in", interface="dashboard", input_sha256=None,
                             actor=Actor(sub="admin-1", issuer="https://idp"))], sqlite_url)
    assert main(["audit", "list", "--db", sqlite_url, "--user", "reader-1"]) == 0
    listed = capsys.readouterr().out
    assert "access_refused" in listed and "reader-1" in listed and "admin-1" not in listed


# --- the local app -------------------------------------------------------------------------------------------

def test_local_mode_says_so_and_quiets_other_libraries_logs():
    from streamlit.testing.v1 import AppTest
    for name in ("dicomweb_client", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/model_card.py")
    at.run()
    assert at.get("markdown") and any("Known limitations" in m.value for m in at.markdown)
    assert not at.exception, [e.value for e in at.exception]
    assert any("Single-user local mode" in i.value for i in at.sidebar.info)
    assert logging.getLogger("dicomweb_client").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING


@pytest.mark.slow
def test_cli_records_name_the_operating_system_user_and_host(tmp_path):
    from tests.conftest import FIXTURES, fixture_rows
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    image = FIXTURES / fixture_rows()[0]["fixture"]
    result = subprocess.run([sys.executable, "-m", "covidviz", "predict", str(image)], capture_output=True,
                            text=True, cwd=ROOT, timeout=300, env={**os.environ, "COVIDVIZ_DB_URL": url})
    assert result.returncode == 0, result.stderr
    frame = load_records(url)
    dispose(url)
    assert list(frame["interface"]) == ["cli"]
    assert list(frame["os_user"]) == [getpass.getuser()] and list(frame["host"]) == [socket.gethostname()]
    assert frame["user_sub"].isna().all()
