"""Profiles — what a client connects to — and the servers assigned to them.

Owns creating, listing, showing and deleting profiles, and assigning servers to them
(with a manifest's off-by-default tools switched off in the new assignment). A profile
belongs to whoever created it. It must never show or change a profile to an actor who
neither owns it nor is an admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Conflict, Invalid
from gigmcp.store.models import Profile, ProfileServer, ProfileTool, Server

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    slug: str
    servers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolSetting:
    tool: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class AssignedServer:
    server: str
    default_enabled: bool
    tools: tuple[ToolSetting, ...]


@dataclass(frozen=True, slots=True)
class ProfileDetail:
    slug: str
    assignments: tuple[AssignedServer, ...]


def create_profile(engine: Engine, actor: Actor, slug: str) -> None:
    if not SLUG.match(slug):
        raise Invalid(
            f"invalid profile slug {slug!r}: 2-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    try:
        with rows.change(engine, actor, "profile.create", detail=slug) as s:
            s.add(Profile(slug=slug, owner_id=actor.user_id))
    except IntegrityError as exc:
        raise Conflict(f"a profile named {slug!r} already exists") from exc


def rename_profile(engine: Engine, actor: Actor, slug: str, new_slug: str) -> None:
    """Give a profile a new slug; its endpoint moves to /mcp/p/<new slug> (its tokens,
    servers and tools stay)."""
    if not SLUG.match(new_slug):
        raise Invalid(
            f"invalid profile slug {new_slug!r}: 2-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    try:
        with rows.change(engine, actor, "profile.rename", detail=f"{slug} -> {new_slug}") as s:
            rows.profile(s, actor, slug).slug = new_slug
    except IntegrityError as exc:
        raise Conflict(f"a profile named {new_slug!r} already exists") from exc


def delete_profile(engine: Engine, actor: Actor, slug: str) -> None:
    """Delete a profile; its assignments and tokens go with it."""
    with rows.change(engine, actor, "profile.delete", detail=slug) as s:
        s.delete(rows.profile(s, actor, slug))


def list_profiles(
    engine: Engine, actor: Actor, after: str | None = None, limit: int | None = None
) -> list[ProfileSummary]:
    """The actor's profiles (every profile, for an admin), by slug, with their servers;
    a page of ``limit`` after the slug ``after`` when given. Two queries whatever the
    page holds (the profiles, then all their servers)."""
    if limit is not None and not 1 <= limit <= 1000:
        raise Invalid(f"limit must be 1-1000, not {limit}")
    with Session(engine) as s:
        query = select(Profile.id, Profile.slug).order_by(Profile.slug)
        if not actor.admin:
            query = query.where(Profile.owner_id == actor.user_id)
        if after is not None:
            query = query.where(Profile.slug > after)
        if limit is not None:
            query = query.limit(limit)
        page = s.execute(query).all()
        names: dict[int, list[str]] = {pid: [] for pid, _ in page}
        if names:
            for pid, name in s.execute(
                select(ProfileServer.profile_id, Server.name)
                .join(Server, ProfileServer.server_id == Server.id)
                .where(ProfileServer.profile_id.in_(list(names)))
                .order_by(ProfileServer.id)
            ):
                names[pid].append(name)
    return [ProfileSummary(slug, tuple(names[pid])) for pid, slug in page]


def show_profile(engine: Engine, actor: Actor, slug: str) -> ProfileDetail:
    """A profile's servers and, for each, its tool selection."""
    with Session(engine) as s:
        p = rows.profile(s, actor, slug, hint=False)
        assigned = []
        for a in s.scalars(select(ProfileServer).where(ProfileServer.profile_id == p.id)):
            srv = s.get(Server, a.server_id)
            assert srv is not None
            tools = tuple(
                ToolSetting(t.tool, t.enabled)
                for t in s.scalars(select(ProfileTool).where(ProfileTool.assignment_id == a.id))
            )
            assigned.append(AssignedServer(srv.name, a.default_enabled, tools))
        return ProfileDetail(p.slug, tuple(assigned))


def assign(engine: Engine, actor: Actor, slug: str, server: str, tools_on: bool) -> None:
    try:
        with rows.change(engine, actor, "profile.assign", server=server, detail=slug) as s:
            p, srv = rows.profile(s, actor, slug), rows.usable_server(s, actor, server)
            a = ProfileServer(
                profile_id=p.id, server_id=srv.id, owner_id=p.owner_id, default_enabled=tools_on
            )
            s.add(a)
            s.flush()
            # A registry manifest's tools marked `default: false` (writes, deletes, sends)
            # stay off in a profile until someone enables them there.
            for tool in off_by_default(srv.origin):
                off = ProfileTool(assignment_id=a.id, owner_id=a.owner_id, tool=tool, enabled=False)
                s.add(off)
    except IntegrityError as exc:
        raise Conflict(f"server {server!r} is already assigned to {slug!r}") from exc


def off_by_default(origin: dict[str, Any] | None) -> list[str]:
    """The tools an installed server's manifest marks ``default: false``."""
    manifest = (origin or {}).get("manifest") or {}
    return [
        t["name"]
        for t in manifest.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("default") is False
    ]


def unassign(engine: Engine, actor: Actor, slug: str, server: str) -> None:
    with rows.change(engine, actor, "profile.unassign", server=server, detail=slug) as s:
        p, srv = rows.profile(s, actor, slug), rows.usable_server(s, actor, server)
        s.delete(rows.assignment(s, p, srv))
