"""The store side of installs: a registry server's row, its consent, a pending upgrade.

An installed server is an ordinary ``servers`` row (command, cwd, egress, credentials)
plus ``origin`` (kind, ref, the manifest and its hashes, where its files are) and the
runtime hash its owner consented to. An upgrade with the same runtime hash is applied at
once (presentation-only changes: name, description, category, icon; a credential's vendor
is outside the runtime hash too, but a change of it waits for consent);
one with another runtime hash waits in ``pending``, the installed version still running,
until consented. Every change bumps the revision, so the running gateway picks it up.

Owns these transactions, for ``control/installs.py``. It must never make a server run a
runtime whose hash was not consented, nor touch a server the actor neither owns nor
administers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.control.servers import SERVER_NAME, definitions
from gigmcp.errors import Conflict, Invalid
from gigmcp.installer.consent import needs_consent
from gigmcp.installer.runnable import Runnable
from gigmcp.store.models import Server


def install(engine: Engine, actor: Actor, name: str, run: Runnable) -> None:
    """A new server, consented as it is."""
    if not SERVER_NAME.match(name):
        raise Invalid(f"invalid server name {name!r}: a-z, 0-9 and '-' only")
    egress, credentials = definitions(run.egress, run.credentials)
    try:
        with rows.change(engine, actor, "server.install", server=name, detail=_detail(run)) as s:
            s.add(
                Server(
                    name=name,
                    owner_id=actor.user_id,
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
        raise Conflict(f"a server named {name!r} already exists") from exc


def upgrade(
    engine: Engine, actor: Actor, name: str, run: Runnable
) -> Literal["applied", "pending"]:
    """Apply ``run`` if its runtime was consented already, else keep it pending."""
    egress, credentials = definitions(run.egress, run.credentials)
    with rows.change(engine, actor, "server.upgrade", server=name, detail=_detail(run)) as s:
        srv = rows.server(s, actor, name)
        if srv.origin is None:
            raise Invalid(f"server {name!r} was not installed from the registry")
        checked = dataclasses.replace(run, egress=egress, credentials=credentials)
        # The vendor of an oauth2 credential is outside the runtime hash (the reference's
        # rule) yet says whose connected account's token the proxy injects: a change of
        # it is consented like a runtime change, never applied quietly.
        same_vendors = _vendors(srv.credentials) == _vendors(credentials)
        if same_vendors and not needs_consent(srv.consented_runtime_hash, run.runtime_hash):
            _apply(srv, checked)
            srv.pending = None
            return "applied"
        srv.pending = dataclasses.asdict(checked)
        return "pending"


def _vendors(credentials: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(c.get("id")): str(c.get("vendor") or "") for c in credentials or []}


def pending(engine: Engine, actor: Actor, name: str) -> dict[str, Any] | None:
    with Session(engine) as s:
        return rows.server(s, actor, name).pending


def exists(engine: Engine, name: str) -> bool:
    """Whether the name is taken, by anyone: server names are one namespace."""
    with Session(engine) as s:
        return s.scalar(select(Server.id).where(Server.name == name)) is not None


def origin_of(engine: Engine, actor: Actor, name: str) -> dict[str, Any] | None:
    with Session(engine) as s:
        return rows.server(s, actor, name).origin


def consent(engine: Engine, actor: Actor, name: str, runtime_hash: str) -> dict[str, Any]:
    """Apply the pending upgrade whose runtime hash the operator was shown; returns the
    origin it replaced."""
    with rows.change(engine, actor, "server.consent", server=name) as s:
        srv = rows.server(s, actor, name)
        staged = srv.pending
        if staged is None:
            raise Conflict(f"server {name!r} has no upgrade waiting for consent")
        if staged["origin"]["runtime_hash"] != runtime_hash:
            raise Conflict(f"the upgrade of {name!r} changed since it was shown; look again")
        old = dict(srv.origin or {})
        _apply(srv, Runnable(**staged))
        srv.pending = None
        return old


def uninstall(engine: Engine, actor: Actor, name: str) -> dict[str, Any] | None:
    """Remove the row (its assignments, tool selections, pins and credential values go
    with it); returns its origin so the caller can remove the files."""
    with rows.change(engine, actor, "server.uninstall", server=name) as s:
        srv = rows.server(s, actor, name)
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
    """``run``'s egress and credentials were checked (``definitions``) already."""
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
