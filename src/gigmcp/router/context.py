"""Who is asking: the caller of one client request, as the router needs to see it.

The endpoint builds a :class:`RequestContext` per client request and hands the router a
:class:`RequestSink` through which request-scoped traffic (progress, log messages and,
for legacy clients, server→client requests) flows back on that request's own channel,
and, when the caller has one, the :class:`Listener` its change notifications go to (a
legacy session; a modern ``subscriptions/listen`` stream). It holds no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from gigmcp.core.jsontypes import JSON


class RequestSink(Protocol):
    @property
    def can_ask(self) -> bool:
        """True when the client can receive a server→client request on this channel
        (legacy revisions with an SSE answer). Modern clients get MRTR instead."""
        ...

    def notify(self, message: JSON) -> None:
        """Queue a request-scoped notification; never blocks, keeps order."""
        ...

    async def ask(self, method: str, params: JSON | None) -> JSON:
        """Send a server→client request and return its ``result``; raises RpcError."""
        ...


class Listener(Protocol):
    """A client channel for change notifications (legacy GET stream, modern listen
    stream); router/fanout.py keeps them per profile."""

    def wants(self, method: str, detail: str | None) -> bool:
        """Whether a notification of ``method`` goes to this client (``detail``: the log
        level of a ``notifications/message``)."""
        ...

    def deliver(self, message: JSON) -> None:
        """Queue the notification; never blocks."""
        ...


@dataclass(slots=True)
class RequestContext:
    era: Literal["modern", "legacy"]
    protocol_version: str
    client_capabilities: JSON
    client_info: JSON | None
    # Who holds the token: MRTR request states and sessions are bound to it.
    token_id: int
    user_id: int
    profile_id: int
    sink: RequestSink
    log_level: str | None = None
    session_id: str | None = None
    # The caller's change-notification channel: what its resource subscriptions are
    # held by. None for a stateless modern request, which has none.
    listener: Listener | None = None
    extra: JSON = field(default_factory=dict)

    def supports(self, capability: str) -> bool:
        return capability in self.client_capabilities
