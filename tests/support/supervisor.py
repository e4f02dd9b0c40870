"""A supervisor's peer for tests that run real instances without a router: the gateway's
side of the traffic a server starts, answered with nothing (no client is there)."""

from __future__ import annotations

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON


class Peer:
    """The gateway's side of traffic a server starts: nothing to do with it here."""

    def on_notification(self, key: InstanceKey, message: JSON) -> None:
        return None

    async def on_request(self, key: InstanceKey, message: JSON) -> JSON:
        return {"error": {"code": -32601, "message": "no client in this test"}}

    def on_closed(self, key: InstanceKey, reason: str) -> None:
        return None
