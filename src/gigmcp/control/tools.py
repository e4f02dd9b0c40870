"""Tool selection: which tools of an assigned server a profile shows and lets be called.

Owns switching one tool on or off in one profile (a disabled tool is hidden and
uncallable from the gateway's next request on). It must never change the selection of
a profile the actor neither owns nor administers.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import ProfileTool


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
