"""MCP server definitions: add, list, change limits and egress, remove, read logs.

Owns checking a definition before it is stored (name, command, environment names,
limits, the egress grant and credential definitions, ports the operator allows) and
the transactions that store it. A server belongs to whoever added or installed it. It
must never store a definition it has not checked, nor show or change a server to an
actor who neither owns it nor is an admin.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.core.definitions import DefinitionError, parse_credentials, parse_egress
from gigmcp.errors import Conflict, Invalid, NotFound
from gigmcp.netpolicy.policy import PortNotPermitted, PortRules
from gigmcp.store.limits import LimitError
from gigmcp.store.limits import check as check_limits
from gigmcp.store.models import Server
from gigmcp.supervisor.logs import tail

SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class ServerSummary:
    """A server as listed: its command, and where the jail runs it from."""

    name: str
    command: tuple[str, ...]
    cwd: str | None
    # An installed OCI image's extracted root, the jail's / (None otherwise).
    rootfs: str | None


def add_server(
    engine: Engine,
    actor: Actor,
    name: str,
    command: list[str],
    env: dict[str, str],
    env_names: list[str],
    cwd: str | None,
    limits: dict[str, int] | None = None,
    egress: dict[str, Any] | None = None,
    credentials: list[dict[str, Any]] | None = None,
    extra_ports: Collection[int] = (),
) -> None:
    try:
        checked = check_limits(dict(limits or {}))
    except LimitError as exc:
        raise Invalid(str(exc)) from exc
    egress_json, credentials_json = definitions(egress, credentials, extra_ports)
    if not SERVER_NAME.match(name):
        raise Invalid(
            f"invalid server name {name!r}: a-z, 0-9 and '-' only "
            "(no '_': tools are named <server>_<tool>)"
        )
    if not command:
        raise Invalid("missing command: gigmcp server add NAME -- COMMAND [ARGS]...")
    for key in [*env, *env_names]:
        if not ENV_NAME.match(key):
            raise Invalid(f"invalid environment variable name {key!r}")
    try:
        with rows.change(engine, actor, "server.add", server=name) as s:
            s.add(
                Server(
                    name=name,
                    owner_id=actor.user_id,
                    command=command,
                    env=env,
                    env_names=env_names,
                    cwd=cwd,
                    limits=checked,
                    egress=egress_json,
                    credentials=credentials_json,
                )
            )
    except IntegrityError as exc:
        raise Conflict(f"a server named {name!r} already exists") from exc


def list_servers(engine: Engine, actor: Actor) -> list[ServerSummary]:
    """The servers the actor may use: their own and the administrators' (the catalog);
    every server, for an admin. By name."""
    with Session(engine) as s:
        query = select(Server).order_by(Server.name)
        if not actor.admin:
            query = query.where(Server.owner_id.in_([actor.user_id, *rows.shared_owner_ids(s)]))
        return [
            ServerSummary(srv.name, tuple(srv.command), srv.cwd, (srv.origin or {}).get("rootfs"))
            for srv in s.scalars(query)
        ]


def set_limits(engine: Engine, actor: Actor, name: str, limits: dict[str, int]) -> None:
    """Change a server's limits; they apply from its next start."""
    try:
        checked = check_limits(dict(limits))
    except LimitError as exc:
        raise Invalid(str(exc)) from exc
    with rows.change(engine, actor, "server.limits", server=name) as s:
        srv = rows.server(s, actor, name)
        srv.limits = {**(srv.limits or {}), **checked}


def definitions(
    egress: dict[str, Any] | None,
    credentials: list[dict[str, Any]] | None,
    extra_ports: Collection[int] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse and check a grant. ``extra_ports``: the operator's GIG_EGRESS_EXTRA_PORTS;
    without it, only 443 and 80 (the proxy checks again at run time)."""
    try:
        parsed = parse_egress(egress)
        creds = parse_credentials(credentials, parsed)
        PortRules(extra_ports).check(parsed.ports)
    except (DefinitionError, PortNotPermitted) as exc:
        raise Invalid(str(exc)) from exc
    return parsed.to_json(), [c.to_json() for c in creds]


def set_egress(
    engine: Engine,
    actor: Actor,
    name: str,
    egress: dict[str, Any],
    credentials: list[dict[str, Any]] | None = None,
    extra_ports: Collection[int] = (),
) -> None:
    """Replace a server's egress allowlist (and, if given, its credential definitions);
    running instances are retired as soon as the gateway notices (router/gateway.py)."""
    with rows.change(engine, actor, "server.egress", server=name) as s:
        srv = rows.server(s, actor, name)
        egress_json, creds_json = definitions(
            egress, srv.credentials if credentials is None else credentials, extra_ports
        )
        srv.egress, srv.credentials = egress_json, creds_json


def remove_server(engine: Engine, actor: Actor, name: str) -> None:
    """Remove a server; its assignments go with it."""
    with rows.change(engine, actor, "server.remove", server=name) as s:
        s.delete(rows.server(s, actor, name))


def log_lines(
    engine: Engine, actor: Actor, logs_dir: Path, profile: str, server: str, lines: int
) -> list[str]:
    """The last ``lines`` of the log of ``server``'s instance in ``profile``."""
    with Session(engine) as s:
        pid = rows.profile(s, actor, profile, hint=False).id
    out = tail(logs_dir, pid, server, lines)
    if not out:
        raise NotFound(f"no log yet for {server} in profile {profile} (it has not run)")
    return out
