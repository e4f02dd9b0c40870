"""Operator side of tool pinning (see ``router/pins.py``): list a server's pins and
flags, approve a changed tool.

Owns the pin rows' reads and the approval transaction (which bumps the revision so the
running gateway shows the tool again). It must never approve anything but the exact
version that was flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.store.admin import AdminError, _server, change
from gigmcp.store.models import ToolPin


@dataclass(frozen=True, slots=True)
class PinView:
    tool: str
    fingerprint: str
    snapshot: dict[str, Any]
    flagged_fingerprint: str | None
    flagged_snapshot: dict[str, Any] | None


def list_pins(engine: Engine, server: str) -> list[PinView]:
    with Session(engine) as s:
        srv = _server(s, server)
        rows = s.scalars(select(ToolPin).where(ToolPin.server_id == srv.id).order_by(ToolPin.tool))
        return [
            PinView(r.tool, r.fingerprint, r.snapshot, r.flagged_fingerprint, r.flagged_snapshot)
            for r in rows
        ]


def approve(engine: Engine, user_id: int, server: str, tool: str) -> str:
    """Accept the flagged version of ``tool``; returns its fingerprint."""
    with change(engine, "tool.approve", user_id, server=server, tool=tool) as s:
        srv = _server(s, server)
        row = s.scalar(select(ToolPin).where(ToolPin.server_id == srv.id, ToolPin.tool == tool))
        if row is None:
            raise AdminError(f"server {server!r} has no pinned tool {tool!r}")
        if row.flagged_fingerprint is None or row.flagged_snapshot is None:
            raise AdminError(f"tool {tool!r} of {server!r} has not changed: nothing to approve")
        row.fingerprint = row.flagged_fingerprint
        row.snapshot = row.flagged_snapshot
        row.flagged_fingerprint = None
        row.flagged_snapshot = None
        row.flagged_at = None
        return row.fingerprint
