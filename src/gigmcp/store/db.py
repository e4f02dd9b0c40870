"""Engine creation and migrations. SQLite gets WAL, foreign keys and a busy timeout, and
its files are the gateway's alone (0600, see ``gigmcp.filemodes``).

It must never create tables behind Alembic's back: the schema only moves by migration,
and never open a database file another user owns or can write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

from gigmcp import filemodes

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``. A SQLite file is created 0600 before SQLite opens it (its
    -wal and -shm then get the same mode), or refused with ``filemodes.ModeError``
    when another user owns it or others can write it."""
    if url.startswith("sqlite:"):
        database = filemodes.sqlite_database(url)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            filemodes.sqlite_files(database, "GIG_DATABASE_URL")
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # psycopg 3 is the driver we ship; a plain postgresql:// URL would ask for psycopg2.
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # hide_parameters: an error message never carries a bound value (a hash, a name).
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (the tests build older ones to migrate from)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
