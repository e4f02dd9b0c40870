"""One forwarded request in flight to one upstream, and the questions it raises.

A server may ask its client something (sampling, elicitation, roots) while it handles a
request. Legacy stdio servers say nothing about which request a question belongs to, so
a question is attributed to an in-flight call on the same instance whose client declared
the capability, preferring calls that have not asked yet of tools seen asking before (see
``docs/architecture.md``, "Attributing server requests"). A legacy client answers on its
SSE channel; a modern client gets an ``InputRequiredResult`` and the call is *parked*
until the client retries with ``inputResponses`` and the gateway's ``requestState``.

This module must never let a parked call outlive its deadline nor accept a request state
minted for another token.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.mcp.jsonrpc import INVALID_PARAMS, RpcError
from gigmcp.router.context import RequestContext
from gigmcp.router.handles import Handles
from gigmcp.upstream.types import PendingRequest

# Which client capability a server→client request needs.
CAPABILITY_FOR = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}


# The requests the forwarder may park for the client's answer (hub.py forwards these).
PARKABLE_METHODS = ("tools/call", "prompts/get", "resources/read", "completion/complete")


@dataclass(eq=False, slots=True)
class Question:
    method: str
    params: JSON | None
    answer: asyncio.Future[JSON]


@dataclass(eq=False, slots=True)
class Call:
    key: InstanceKey
    ctx: RequestContext
    method: str
    name: str | None
    pending: PendingRequest
    response: asyncio.Future[JSON]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: deque[Question] = field(default_factory=deque)
    open_questions: int = 0
    asked: int = 0
    progress_token: str | None = None
    gateway_token: str | None = None
    parked: bool = False
    deadline: float = 0.0

    def wants(self, capability: str) -> bool:
        return self.ctx.supports(capability)


def attribute(
    calls: list[Call], method: str, history: dict[tuple[str, str | None], bool]
) -> Call | None:
    """Pick the in-flight call a server→client request belongs to.

    ``history`` says, per (method, name), whether calls of that tool were seen asking
    (True) or finishing without asking (False). Most tools ask once: a call that has not
    asked yet, of a tool known to ask (or not known not to), is the likeliest source,
    oldest first since servers take requests in arrival order. After that, a call with
    nothing open, newest first: an older call that was answered is about to finish.
    """
    capability = CAPABILITY_FOR.get(method)
    able = [c for c in calls if capability is None or c.wants(capability)]
    if not able:
        return None
    fresh = [c for c in able if c.asked == 0]
    for wanted in (True, None, False):
        for call in fresh:
            if history.get((call.method, call.name)) is wanted:
                return call
    for call in reversed(able):
        if call.open_questions == 0:
            return call
    return able[0]


@dataclass(slots=True)
class Parked:
    call: Call
    questions: dict[str, Question]
    token_id: int
    method: str
    name: str | None
    deadline: float


class ParkingLot:
    """Calls waiting for a modern client's retry, keyed by an authenticated request state
    (``gw.`` and a handle naming this replica, see router/handles.py)."""

    PREFIX = "gw."

    def __init__(self, handles: Handles, ttl: float) -> None:
        self.handles = handles
        self._ttl = ttl
        self._parked: dict[str, Parked] = {}

    def park(self, call: Call, questions: dict[str, Question]) -> str:
        handle = self.handles.mint("state", call.ctx.token_id)
        self._parked[handle] = Parked(
            call,
            questions,
            call.ctx.token_id,
            call.method,
            call.name,
            time.monotonic() + self._ttl,
        )
        return f"{self.PREFIX}{handle}"

    def holder(self, state: object, token_id: int) -> str | None:
        """The replica holding the call ``state`` resumes (None: not a state issued to
        this token)."""
        if not isinstance(state, str) or not state.startswith(self.PREFIX):
            return None
        return self.handles.holder("state", state[len(self.PREFIX) :], token_id)

    def take(self, state: str, ctx: RequestContext, method: str, name: str | None) -> Parked:
        """Return the parked call a retry resumes; anything off is invalid params."""
        handle = state[len(self.PREFIX) :]
        if self.handles.holder("state", handle, ctx.token_id) is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: requestState was not issued to you")
        parked = self._parked.get(handle)
        if parked is None or parked.deadline < time.monotonic():
            raise RpcError(INVALID_PARAMS, "Invalid params: requestState expired or already used")
        if parked.method != method or parked.name != name or parked.token_id != ctx.token_id:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: requestState belongs to another request"
            )
        del self._parked[handle]
        return parked

    def expire(self) -> list[Parked]:
        now = time.monotonic()
        gone = [ident for ident, p in self._parked.items() if p.deadline < now]
        return [self._parked.pop(ident) for ident in gone]

    def drain(self) -> list[Parked]:
        gone = list(self._parked.values())
        self._parked.clear()
        return gone
