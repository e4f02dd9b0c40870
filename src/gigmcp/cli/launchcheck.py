"""What ``gigmcp server add`` and ``gigmcp doctor`` say about a server the jail cannot run.

Owns asking the sandbox's planner (``sandbox/runtime.py``: it reads files, runs nothing)
whether a server's command can run as the jail's unprivileged user, and printing the
cause and the fix in the operator's words: the path, the folder that locks it, what to
do. ``server add`` warns rather than refuses: the definition is only stored, and what
stops it (a folder's mode, a package not installed yet) is usually fixed on the host
without touching the definition; the doctor and the first launch's log say it again.
It never changes a server or the host, and never creates or migrates a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from gigmcp.sandbox.doctor import Check, check_server


def warn_on_add(name: str, command: Sequence[str], cwd: str | None) -> None:
    """After ``server add``: one warning, with the fix, when the jail cannot run it."""
    found = check_server(name, tuple(command), cwd)
    if found.ok:
        return
    typer.echo(
        f"gigmcp: warning: server {name} cannot run in the jail: {found.problem}\n"
        f"gigmcp: fix: {found.fix}\n"
        "gigmcp: (stored anyway; `gigmcp doctor` checks it again)",
        err=True,
    )


def server_checks() -> tuple[list[Check], str]:
    """A check per server in the store, or none and why (nothing configured yet, no
    store yet, a store this command cannot read)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gigmcp import filemodes
    from gigmcp.config import ConfigError, load_settings
    from gigmcp.control import actor, servers
    from gigmcp.store.db import make_engine

    try:
        settings = load_settings()
    except ConfigError as err:
        return [], f"servers not checked: {err}"
    database = filemodes.sqlite_database(settings.database_url)
    if database is not None and not Path(database).exists():
        return [], "servers not checked: no store yet"
    try:
        engine = make_engine(settings.database_url)
    except (OSError, ValueError, filemodes.ModeError) as err:
        return [], f"servers not checked: {err}"
    try:
        # Read as the local administrator, without creating one: a store nobody
        # administered from here has no server added from here either.
        admin = actor.find_local_admin(engine)
        rows = servers.list_servers(engine, admin) if admin is not None else []
    except SQLAlchemyError as err:
        return [], f"servers not checked: cannot read the store ({type(err).__name__})"
    finally:
        engine.dispose()
    checks = [check_server(s.name, s.command, s.cwd, s.rootfs) for s in rows]
    return checks, "" if checks else "no servers yet"


def print_server_checks() -> bool:
    """The doctor's server section; True when every server can run in the jail."""
    checks, note = server_checks()
    if note:
        typer.echo(f"note     {note}")
    for c in checks:
        if c.ok:
            typer.echo(f"ok       {c.name}  {c.detail}".rstrip())
        else:
            typer.echo(f"FAILS    {c.name}: {c.problem}\n         fix: {c.fix}")
    return all(c.ok for c in checks)
