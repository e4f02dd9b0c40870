"""Server instances as an actor may see them: which exist and what each is doing.

Owns joining a status snapshot (the supervisor's :class:`~gigmcp.core.instances.
InstanceView` list, keyed by profile id and server name) with the store: an instance is
one assignment of a server to a profile, named by the profile's slug, with the
snapshot's state, restarts, last error, memory and last use (an assignment the snapshot
does not know is idle: its first call starts it). It keeps only what the actor may see:
a user, the instances of their own profiles; an administrator, every instance. It must
never show an instance of a profile the actor neither owns nor administers, nor a
server's to an actor who may not use that server (both are "not found", as for a
missing one), and never let an ORM object out. It reads no process itself: whoever
holds the supervisor passes its snapshot in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.control.servers import ServerSummary
from gigmcp.core.instances import InstanceKey, InstanceState, InstanceView
from gigmcp.errors import NotFound
from gigmcp.store.models import Profile, ProfileServer, Server


@dataclass(frozen=True, slots=True)
class Instance:
    """One server in one profile, and what its instance is doing (see InstanceView)."""

    server: str
    profile: str
    state: InstanceState
    restarts: int
    last_error: str | None
    memory_bytes: int | None
    started_at: datetime | None
    last_used: datetime | None


@dataclass(frozen=True, slots=True)
class ServerInstances:
    """A server the actor may use, and its instances the actor may see."""

    server: ServerSummary
    instances: tuple[Instance, ...]


def visible(
    engine: Engine,
    actor: Actor,
    snapshot: Sequence[InstanceView] | None,
    server: str | None = None,
) -> list[Instance]:
    """The instances of every profile the actor may see (every profile, for an
    administrator), by server then profile; only ``server``'s when it is given.
    ``snapshot`` None: no supervisor runs in this process, so there is no instance."""
    if snapshot is None:
        return []
    with Session(engine) as s:
        query = (
            select(Profile.id, Profile.slug, Server.name)
            .join(ProfileServer, ProfileServer.profile_id == Profile.id)
            .join(Server, Server.id == ProfileServer.server_id)
        )
        if not actor.admin:
            query = query.where(Profile.owner_id == actor.user_id)
        if server is not None:
            query = query.where(Server.name == server)
        assigned = [(pid, slug, name) for pid, slug, name in s.execute(query)]
    # Only assignments: an instance whose assignment is gone is being retired, and one
    # whose profile is gone acts for nobody.
    by_key = {v.key: v for v in snapshot}
    out = [
        _instance(name, slug, by_key.get(InstanceKey(pid, name))) for pid, slug, name in assigned
    ]
    return sorted(out, key=lambda i: (i.server, i.profile))


def of_server(
    engine: Engine, actor: Actor, snapshot: Sequence[InstanceView] | None, name: str
) -> ServerInstances:
    """A server the actor may use (their own, an administrator's, or any for an
    administrator) with its instances the actor may see; NotFound otherwise."""
    with Session(engine) as s:
        srv = rows.usable_server(s, actor, name)
        summary = ServerSummary(
            srv.name, tuple(srv.command), srv.cwd, (srv.origin or {}).get("rootfs")
        )
    return ServerInstances(summary, tuple(visible(engine, actor, snapshot, name)))


def find(
    engine: Engine,
    actor: Actor,
    snapshot: Sequence[InstanceView] | None,
    server: str,
    profile: str,
) -> Instance:
    """One instance the actor may see: ``server`` in ``profile``. NotFound, in the same
    words, for a server or profile that is missing, not assigned or not the actor's."""
    found = of_server(engine, actor, snapshot, server)
    for inst in found.instances:
        if inst.profile == profile:
            return inst
    raise NotFound(f"no instance of {server!r} in a profile named {profile!r}")


def _instance(server: str, profile: str, view: InstanceView | None) -> Instance:
    if view is None:
        return Instance(server, profile, "idle", 0, None, None, None, None)
    return Instance(
        server,
        profile,
        view.state,
        view.restarts,
        view.last_error,
        view.memory_bytes,
        view.started_at,
        view.last_used,
    )
