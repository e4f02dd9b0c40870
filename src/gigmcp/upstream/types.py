"""The contract between the router and one upstream MCP server connection.

The router implements :class:`UpstreamPeer` to receive what a server sends on its own
initiative; the upstream package implements :class:`Upstream` over a byte stream (the
stdio of a launched process). Neither side knows how the process was launched.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.errors import UpstreamError

Era = Literal["modern", "legacy"]


class UpstreamClosed(UpstreamError):
    """The server went away (crash, exit, shutdown) while a request was in flight."""


class InstanceUnavailable(UpstreamError):
    """An instance could not be started. The message is all a client may see: the
    server's name and a reference. The cause (host paths, bubblewrap's words, cgroup and
    network errors) was logged under that reference, in the gateway's log and in the
    instance's own (``gigmcp server logs``), never in this message."""

    def __init__(self, server: str, ref: str) -> None:
        super().__init__(f"Server '{server}' is unavailable (ref {ref})")
        self.server = server
        self.ref = ref


class MessageTooLarge(UpstreamClosed):
    """The server sent one message larger than the gateway accepts; the instance ended."""


class UpstreamPeer(Protocol):
    """What the gateway does with traffic an upstream server starts."""

    def on_notification(self, key: InstanceKey, message: JSON) -> None:
        """A notification from the server (list_changed, progress, message, updated...)."""
        ...

    async def on_request(self, key: InstanceKey, message: JSON) -> JSON:
        """A server→client request (sampling, elicitation, roots, ping). Return the JSON-RPC
        response body *without* ``jsonrpc``/``id``: ``{"result": ...}`` or ``{"error": ...}``."""
        ...

    def on_closed(self, key: InstanceKey, reason: str) -> None:
        """The connection ended; every pending request has already failed."""
        ...


class PendingRequest(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def future(self) -> asyncio.Future[JSON]:
        """Resolves with the response message, or fails with :class:`UpstreamClosed`;
        cancelled by :meth:`cancel`. For callers that run their own timeout."""
        ...

    async def wait(self, timeout: float | None) -> JSON:
        """The whole response message (with ``result`` or ``error``). Raises
        :class:`UpstreamClosed` if the server dies first and ``TimeoutError`` on timeout
        (after sending ``notifications/cancelled`` upstream)."""
        ...

    def cancel(self, reason: str) -> None:
        """Send ``notifications/cancelled`` upstream and stop waiting."""
        ...


class Upstream(Protocol):
    """A live, handshaken connection to one server."""

    era: Era
    protocol_version: str
    server_info: JSON
    capabilities: JSON
    instructions: str | None

    def request(self, method: str, params: JSON | None) -> PendingRequest:
        """Send a request with a fresh upstream id. For a modern server the connection fills
        the required ``_meta`` protocol fields when the caller did not."""
        ...

    def notify(self, method: str, params: JSON | None) -> None: ...

    @property
    def closed(self) -> bool: ...

    async def close(self) -> None: ...
