"""Operator side of tool pinning (see ``core/pins.py``): list a server's pins and
flags, approve a changed tool.

Owns the pin rows' reads and the approval transaction (which bumps the revision so the
running gateway shows the tool again). It must never approve anything but the exact
version that was flagged, nor show or approve the pins of a server the actor neither
owns nor administers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Conflict, NotFound
from gigmcp.store.models import ToolPin


@dataclass(frozen=True, slots=True)
class PinView:
    tool: str
    fingerprint: str
    snapshot: dict[str, Any]
    flagged_fingerprint: str | None
    flagged_snapshot: dict[str, Any] | None


def list_pins(engine: Engine, actor: Actor, server: str) -> list[PinView]:
    """What a usable server's tools were pinned as (approving a change needs the right
    to change the server: :func:`approve`)."""
    with Session(engine) as s:
        srv = rows.usable_server(s, actor, server)
        found = s.scalars(select(ToolPin).where(ToolPin.server_id == srv.id).order_by(ToolPin.tool))
        return [
            PinView(r.tool, r.fingerprint, r.snapshot, r.flagged_fingerprint, r.flagged_snapshot)
            for r in found
        ]


def approve(engine: Engine, actor: Actor, server: str, tool: str) -> str:
    """Accept the flagged version of ``tool``; returns its fingerprint."""
    with rows.change(engine, actor, "tool.approve", server=server, tool=tool) as s:
        srv = rows.server(s, actor, server)
        row = s.scalar(select(ToolPin).where(ToolPin.server_id == srv.id, ToolPin.tool == tool))
        if row is None:
            raise NotFound(f"server {server!r} has no pinned tool {tool!r}")
        if row.flagged_fingerprint is None or row.flagged_snapshot is None:
            raise Conflict(f"tool {tool!r} of {server!r} has not changed: nothing to approve")
        row.fingerprint = row.flagged_fingerprint
        row.snapshot = row.flagged_snapshot
        row.flagged_fingerprint = None
        row.flagged_snapshot = None
        row.flagged_at = None
        return row.fingerprint
