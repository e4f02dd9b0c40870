"""An online-consistent copy of the SQLite database: SQLite's backup API copies the
pages under a read transaction, so a gateway may go on writing (WAL) while it runs and
the copy is the database as of one moment.

Owns writing the copy: to a new file only (never over an existing one), made 0600
before a byte is written, checked with ``PRAGMA integrity_check`` before it is called
done. It must never copy the master key (it is not in the database) nor touch the
source. PostgreSQL is backed up with its own tools (docs/operations.md, "Backups").
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from gigmcp.errors import GigError

PAGES_PER_STEP = 1024  # copied per step; writers get the lock between steps


class BackupError(GigError):
    """The copy could not be made (the service layer says it as Invalid)."""


def sqlite_backup(source: Path, destination: Path) -> int:
    """Copy ``source`` to ``destination`` (which must not exist). Returns its size."""
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{destination} exists: choose a new file") from None
    except OSError as exc:
        raise BackupError(f"cannot create {destination}: {exc.strerror}") from None
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(destination)
            try:
                src.backup(dst, pages=PAGES_PER_STEP)
                # The copy is a self-contained file, not a WAL database needing its -wal.
                dst.execute("PRAGMA journal_mode=DELETE")
                ok = dst.execute("PRAGMA integrity_check").fetchone()
                if ok is None or ok[0] != "ok":
                    raise BackupError(f"the copy does not pass SQLite's integrity check: {ok}")
            finally:
                dst.close()
        finally:
            src.close()
    except (sqlite3.Error, BackupError) as exc:
        with contextlib.suppress(OSError):
            destination.unlink()
        raise BackupError(f"backup failed: {exc}") from None
    return destination.stat().st_size
