"""Tool selection: which tools of an assigned server a profile shows and lets be called.

Owns switching one tool on or off in one profile (a disabled tool is hidden and
uncallable from the gateway's next request on), and the list of a profile's tools,
server by server, as far as the gateway knows them: the tools a server has listed
(their pins), the tools its registry manifest declares, and the profile's own
settings. It never invents a tool: a server that has never listed its tools says so.
It must never show or change the selection of a profile the actor neither owns nor
administers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import ProfileServer, ProfileTool, Server, ToolPin


@dataclass(frozen=True, slots=True)
class ToolState:
    """One tool of an assigned server, in one profile."""

    tool: str
    # As the gateway decides: the profile's own setting, else the assignment's default.
    enabled: bool
    # The profile has a setting of its own for this tool.
    explicit: bool
    # The server has listed it on this gateway (it is pinned).
    seen: bool
    # The server's registry manifest declares it.
    declared: bool
    # From the approved pin: what the model reads.
    description: str | None
    # Changed since it was pinned: hidden in every profile until approved.
    changed: bool
    pinned: dict[str, Any] | None
    flagged: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ServerTools:
    server: str
    default_enabled: bool
    # Whether the server has ever listed its tools on this gateway (else only what its
    # manifest declares, or the profile's settings, are known).
    listed: bool
    # Whether the actor may approve a changed tool (the right to change the server).
    may_approve: bool
    tools: tuple[ToolState, ...]


def set_tool(
    engine: Engine, actor: Actor, slug: str, server: str, tool: str, enabled: bool
) -> None:
    if not tool or len(tool) > 255:
        raise Invalid("tool name must be 1-255 characters")
    action = "tool.enable" if enabled else "tool.disable"
    with rows.change(engine, actor, action, server=server, tool=tool, detail=slug) as s:
        a = rows.assignment(s, rows.profile(s, actor, slug), rows.usable_server(s, actor, server))
        row = s.scalar(
            select(ProfileTool).where(ProfileTool.assignment_id == a.id, ProfileTool.tool == tool)
        )
        if row is None:
            s.add(ProfileTool(assignment_id=a.id, owner_id=a.owner_id, tool=tool, enabled=enabled))
        else:
            row.enabled = enabled


def profile_tools(engine: Engine, actor: Actor, slug: str) -> list[ServerTools]:
    """Each server assigned to the profile (in the order assigned) with its known tools,
    by name. Four queries whatever the profile holds."""
    with Session(engine) as s:
        p = rows.profile(s, actor, slug, hint=False)
        assigned = s.execute(
            select(ProfileServer, Server)
            .join(Server, ProfileServer.server_id == Server.id)
            .where(ProfileServer.profile_id == p.id)
            .order_by(ProfileServer.id)
        ).all()
        if not assigned:
            return []
        settings: dict[int, dict[str, bool]] = {a.id: {} for a, _ in assigned}
        for row in s.scalars(
            select(ProfileTool).where(ProfileTool.assignment_id.in_(list(settings)))
        ):
            settings[row.assignment_id][row.tool] = row.enabled
        pins: dict[int, dict[str, ToolPin]] = {srv.id: {} for _, srv in assigned}
        for pin in s.scalars(select(ToolPin).where(ToolPin.server_id.in_(list(pins)))):
            pins[pin.server_id][pin.tool] = pin
        return [_server_tools(actor, a, srv, settings[a.id], pins[srv.id]) for a, srv in assigned]


def _server_tools(
    actor: Actor,
    a: ProfileServer,
    srv: Server,
    own: dict[str, bool],
    pins: dict[str, ToolPin],
) -> ServerTools:
    declared = set(declared_tools(srv.origin))
    states = []
    for name in sorted(set(pins) | declared | set(own)):
        pin = pins.get(name)
        snapshot = pin.snapshot if pin is not None else None
        description = (snapshot or {}).get("description")
        states.append(
            ToolState(
                tool=name,
                # The rule of core/views.py (Assignment.tool_enabled), on the stored rows.
                enabled=own.get(name, a.default_enabled),
                explicit=name in own,
                seen=pin is not None,
                declared=name in declared,
                description=description if isinstance(description, str) else None,
                changed=pin is not None and pin.flagged_fingerprint is not None,
                pinned=snapshot,
                flagged=pin.flagged_snapshot if pin is not None else None,
            )
        )
    return ServerTools(
        server=srv.name,
        default_enabled=a.default_enabled,
        listed=bool(pins),
        may_approve=actor.may_touch(srv.owner_id),
        tools=tuple(states),
    )


def declared_tools(origin: dict[str, Any] | None) -> list[str]:
    """The tools an installed server's registry manifest lists (none for a server added
    by hand)."""
    manifest = (origin or {}).get("manifest") or {}
    return [
        t["name"]
        for t in manifest.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]
