"""Engine creation and migrations. SQLite gets WAL, foreign keys and a busy timeout, and
its files are the gateway's alone (0600, see ``gigmcp.filemodes``). Also the one clock
every database lease is judged by (:func:`clock`: the connected-account refresh lease in
``oauth.py``, the background jobs' lease in ``jobs.py``).

It must never create tables behind Alembic's back: the schema only moves by migration,
once, under a lock (an advisory lock on PostgreSQL, a lock file beside a SQLite
database); and never open a database file another user owns or can write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, text

from gigmcp import filemodes
from gigmcp.store.models import utcnow

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


def clock(engine: Engine) -> Any:
    """The time a lease is judged by, as an expression to compare and add to in SQL: the
    database's own clock on PostgreSQL, which every replica shares (a replica whose
    clock runs ahead must not take a lease that another holds); the host's on SQLite,
    whose users are all on that host."""
    return func.now() if engine.dialect.name == "postgresql" else utcnow()


# pg_advisory_xact_lock's key for migrations: any constant no other code uses.
_MIGRATION_LOCK = 0x6769676D6370  # "gigmcp"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (the tests build older ones to migrate from).
    Once, however many processes start together (replicas on one PostgreSQL, or a
    gateway and a command on one SQLite file): each takes a lock first, so the others
    wait, then read the version the first one left and have nothing to do."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    database = filemodes.sqlite_database(str(engine.url))
    with contextlib.ExitStack() as held:
        if database is not None:
            # SQLite takes its write lock only at the first write, after the version
            # was read: a lock file beside the database comes first.
            path = database.parent / f"{database.name}.migrate-lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            held.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Held to the end of this transaction, which the migrations run in.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
