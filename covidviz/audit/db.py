"""Where the audit log lives and how a database gets its schema: by URL, migrated on first use.

Default: SQLite in ``~/.covidviz/audit.sqlite`` (zero set-up). ``COVIDVIZ_DB_URL`` names any SQLAlchemy URL
instead, e.g. ``postgresql+psycopg://covidviz@db.example/audit``. The schema is created and upgraded by the
Alembic migrations shipped in ``covidviz/audit/migrations`` the first time a process touches a database,
so a fresh database needs no manual step.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_DB_PATH = Path("~/.covidviz/audit.sqlite")
SQLITE_BUSY_TIMEOUT_S = 30  # several processes (dashboard, CLI, batch) may write the same file
CONNECT_TIMEOUT_S = 10  # an unreachable server costs the background writer this long, never the caller

log = logging.getLogger("covidviz.audit")
_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def database_url(url: str | None = None) -> str:
    """The URL given, else ``COVIDVIZ_DB_URL``, else the SQLite file in the user's home."""
    if url:
        return url
    if os.environ.get("COVIDVIZ_DB_URL"):
        return os.environ["COVIDVIZ_DB_URL"]
    return f"sqlite:///{DEFAULT_DB_PATH.expanduser()}"


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (an unparsable URL is shown as nothing rather than leaked)
        return "<unparsable database URL>"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the Audit page) never block the writers
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process (each holds a connection pool), created on first use."""
    url = database_url(url)
    with _lock:
        if url not in _engines:
            parsed = make_url(url)
            kwargs: dict = {"pool_pre_ping": True}
            if parsed.get_driver_name() in ("psycopg", "psycopg2"):
                kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
            engine = create_engine(url, **kwargs)
            if parsed.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            _engines[url] = engine
        return _engines[url]


def alembic_config(engine: Engine | None = None):
    """Alembic's configuration for the shipped migrations, without an ini file (``alembic.command`` takes it);
    with ``engine``, env.py migrates through it."""
    import sys

    from alembic.config import Config
    config = Config(stdout=sys.stdout)  # its default is the sys.stdout of alembic's first import, maybe long closed
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(url: str | None = None) -> Engine:
    """The engine for ``url``, its schema upgraded to the newest revision (once per process and URL).

    Two processes migrating one fresh database at once can collide; the loser finds the schema at head
    and carries on."""
    engine = get_engine(url)
    key = database_url(url)
    if key in _migrated:
        return engine
    with _lock:
        if key in _migrated:
            return engine
        from alembic import command
        try:
            if current_revision(engine) != head_revision():
                command.upgrade(alembic_config(engine), "head")
        except Exception:
            if current_revision(engine) != head_revision():
                raise
            log.info("audit schema was migrated by another process meanwhile")
        _migrated.add(key)
    return engine


def has_schema(url: str | None = None) -> bool:
    """Whether the database already holds the audit table (without creating anything)."""
    return inspect(get_engine(url)).has_table("audit_records")


def dispose(url: str | None = None) -> None:
    """Close an engine's connections and forget it (tests that drop their database need this)."""
    key = database_url(url)
    with _lock:
        engine = _engines.pop(key, None)
        _migrated.discard(key)
    if engine is not None:
        engine.dispose()
