"""``gigmcp backup FILE``: a consistent copy of the database while the gateway runs.

Owns the command's output. It must never reach the store but through the service layer
(``control/backup.py``), and never print or copy the master key.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gigmcp.cli.app import app, store
from gigmcp.control import backup as backups


@app.command("backup")
def backup(destination: Path = typer.Argument(..., help="A new file for the copy.")) -> None:
    """Copy the SQLite database, consistently, while the gateway runs (PostgreSQL: the
    command says how). The master key is not in the copy: keep it apart, as you must."""
    st = store()
    done = backups.backup(st.engine, st.actor, st.settings.database_url, destination)
    typer.echo(
        f"backed up to {done.path} ({done.size} bytes, 0600); restore: stop the gateway, "
        "put it in place of gigmcp.db (no -wal or -shm beside it) and start the gateway "
        "with the same master key",
        err=True,
    )
