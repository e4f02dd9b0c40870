"""``backup``: a consistent copy of the gateway's database while it runs.

Owns who may (administrators) and which database can be copied here: SQLite, through
``store/backup.py``; PostgreSQL is answered with the way to do it (``pg_dump``), since
its own tools do it better than a copy through this process would. It must never copy
or print the master key: the copy is useless without it, and that is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gigmcp import filemodes
from gigmcp.control import users
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.backup import BackupError, sqlite_backup


@dataclass(frozen=True, slots=True)
class BackupDone:
    path: Path
    size: int


def backup(engine: Engine, actor: Actor, database_url: str, destination: Path) -> BackupDone:
    users.require_admin(engine, actor)
    database = filemodes.sqlite_database(database_url)
    if database is None and database_url.startswith("sqlite:"):
        raise Invalid("an in-memory database has nothing to back up")
    if database is None:
        raise Invalid(
            "this gateway's database is PostgreSQL: back it up with its own tools, "
            'e.g. pg_dump --format=custom --file=gigmcp.dump "$GIG_DATABASE_URL" '
            "(a consistent snapshot while the gateway runs; docs/operations.md, Backups)"
        )
    try:
        size = sqlite_backup(database, destination)
    except BackupError as exc:
        raise Invalid(str(exc)) from None
    return BackupDone(destination, size)
