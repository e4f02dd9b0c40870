"""The store side of installs: a registry server's row, its consent, a pending upgrade.

An installed server is an ordinary ``servers`` row (command, cwd, egress, credentials)
plus ``origin`` (kind, ref, the manifest and its hashes, where its files are) and the
runtime hash its owner consented to. An upgrade with the same runtime hash is applied at
once (presentation-only changes: name, description, category, icon, credential vendor);
one with another runtime hash waits in ``pending``, the installed version still running,
until consented. Every change bumps the revision, so the running gateway picks it up.

Owns these transactions. It must never make a server run a runtime whose hash was not
consented.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.installer.consent import needs_consent
from gigmcp.store.admin import SERVER_NAME, AdminError, _definitions, _server, change
from gigmcp.store.models import Server


@dataclass(frozen=True, slots=True)
class Runnable:
    """What to start, and what it may reach: everything a server row holds."""

    command: list[str]
    cwd: str | None
    env: dict[str, str]
    egress: dict[str, Any]
    credentials: list[dict[str, Any]]
    origin: dict[str, Any]  # kind, ref, name, version, manifest, hashes, path

    @property
    def runtime_hash(self) -> str:
        return str(self.origin["runtime_hash"])


def install(engine: Engine, user_id: int, name: str, run: Runnable) -> None:
    """A new server, consented as it is."""
    if not SERVER_NAME.match(name):
        raise AdminError(f"invalid server name {name!r}: a-z, 0-9 and '-' only")
    egress, credentials = _definitions(run.egress, run.credentials)
    try:
        with change(engine, "server.install", user_id, server=name, detail=_detail(run)) as s:
            s.add(
                Server(
                    name=name,
                    owner_id=user_id,
                    command=run.command,
                    env=run.env,
                    env_names=[],
                    cwd=run.cwd,
                    limits={},
                    egress=egress,
                    credentials=credentials,
                    origin=run.origin,
                    consented_runtime_hash=run.runtime_hash,
                )
            )
    except IntegrityError as exc:
        raise AdminError(f"a server named {name!r} already exists") from exc


def upgrade(engine: Engine, user_id: int, name: str, run: Runnable) -> str:
    """Apply ``run`` if its runtime was consented already, else keep it pending.
    Returns ``"applied"`` or ``"pending"``."""
    egress, credentials = _definitions(run.egress, run.credentials)
    with change(engine, "server.upgrade", user_id, server=name, detail=_detail(run)) as s:
        srv = _server(s, name)
        if srv.origin is None:
            raise AdminError(f"server {name!r} was not installed from the registry")
        checked = dataclasses.replace(run, egress=egress, credentials=credentials)
        if not needs_consent(srv.consented_runtime_hash, run.runtime_hash):
            _apply(srv, checked)
            srv.pending = None
            return "applied"
        srv.pending = dataclasses.asdict(checked)
        return "pending"


def pending(engine: Engine, name: str) -> dict[str, Any] | None:
    with Session(engine) as s:
        return _server(s, name).pending


def exists(engine: Engine, name: str) -> bool:
    with Session(engine) as s:
        return s.scalar(select(Server.id).where(Server.name == name)) is not None


def origin_of(engine: Engine, name: str) -> dict[str, Any] | None:
    with Session(engine) as s:
        return _server(s, name).origin


def consent(engine: Engine, user_id: int, name: str, runtime_hash: str) -> dict[str, Any]:
    """Apply the pending upgrade whose runtime hash the operator was shown."""
    with change(engine, "server.consent", user_id, server=name) as s:
        srv = _server(s, name)
        staged = srv.pending
        if staged is None:
            raise AdminError(f"server {name!r} has no upgrade waiting for consent")
        if staged["origin"]["runtime_hash"] != runtime_hash:
            raise AdminError(f"the upgrade of {name!r} changed since it was shown; look again")
        old = dict(srv.origin or {})
        _apply(srv, Runnable(**staged))
        srv.pending = None
        return old


def uninstall(engine: Engine, user_id: int, name: str) -> dict[str, Any] | None:
    """Remove the row (its assignments, tool selections, pins and credential values go
    with it); returns its origin so the caller can remove the files."""
    with change(engine, "server.uninstall", user_id, server=name) as s:
        srv = _server(s, name)
        origin = srv.origin
        s.delete(srv)
        return origin


def paths_in_use(engine: Engine) -> set[str]:
    """Every package folder a server row (installed or pending) still names."""
    used: set[str] = set()
    with Session(engine) as s:
        for origin, staged in s.execute(select(Server.origin, Server.pending)):
            for o in (origin, (staged or {}).get("origin")):
                if isinstance(o, dict) and isinstance(o.get("path"), str):
                    used.add(o["path"])
    return used


def _apply(srv: Server, run: Runnable) -> None:
    """``run``'s egress and credentials were checked (``_definitions``) already."""
    srv.command = run.command
    srv.cwd = run.cwd
    srv.env = run.env
    srv.egress = run.egress
    srv.credentials = run.credentials
    srv.origin = run.origin
    srv.consented_runtime_hash = run.runtime_hash


def _detail(run: Runnable) -> str:
    o = run.origin
    return f"{o.get('name')}@{o.get('version')} runtime {str(o.get('runtime_hash'))[:12]}"
