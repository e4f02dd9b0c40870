"""The streams no request asked for: modern ``subscriptions/listen`` streams and the
legacy session's GET stream (with its ``Last-Event-ID`` resumption).

Owns the open listen streams (to end them when their token stops being valid), what a
listen stream accepts (the change notifications the client opted in to, and the resource
subscriptions that could be made upstream, held by the stream in the hub's fan-out
until it ends), and the legacy GET stream: one live at a time per session, taken over
by a reconnect that names an event, replayed from the session's bounded buffer.

It must never put anything on a stream but what its client asked for, never let a
stream outlive its token, and never leave a listener or a subscription behind when a
stream ends, however it ends.
"""

from __future__ import annotations

from gigmcp.core.asgi import Receive, Send
from gigmcp.core.jsontypes import JSON
from gigmcp.endpoint import sse
from gigmcp.endpoint.buffers import FrameQueue, coalesce_key
from gigmcp.endpoint.http import HttpError, pump, rpc_http_error
from gigmcp.endpoint.request import Request
from gigmcp.endpoint.security import json_error_body
from gigmcp.endpoint.sessions import LegacySession
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router.context import RequestContext


class Listening:
    """The open modern listen streams of the endpoint."""

    def __init__(self, buffer_bytes: int) -> None:
        self._buffer = buffer_bytes
        self._open: set[ListenStream] = set()

    async def listen(self, req: Request, msg: JSON, ctx: RequestContext) -> None:
        """A modern ``subscriptions/listen`` request: acknowledge what can be delivered,
        then stream it until the client leaves or its token stops being valid."""
        hub = req.hub
        params = msg.get("params") or {}
        wanted = params.get("notifications")
        if wanted is not None and not isinstance(wanted, dict):
            raise rpc_http_error(
                400,
                RpcError(rpc.INVALID_PARAMS, "Invalid params: notifications must be an object"),
                msg["id"],
            )
        listener = ListenStream(msg["id"], wanted or {}, ctx.token_id, self._buffer)
        # On the fan-out before subscribing: subscriptions are held by a listener, and
        # whatever it held is released when it is removed, however the stream ends.
        hub.fanout.add(listener)
        self._open.add(listener)
        try:
            ctx.listener = listener
            subscribed: list[str] = []
            for uri in list(listener.accepted.get("resourceSubscriptions", [])):
                try:
                    ok = await hub.subscribe(ctx, uri)
                except RpcError:
                    ok = False
                if ok:
                    subscribed.append(uri)
            listener.restrict(subscribed)
            await req.send(
                {"type": "http.response.start", "status": 200, "headers": sse.SSE_HEADERS}
            )
            await req.send(
                {
                    "type": "http.response.body",
                    "body": listener.acknowledgement(),
                    "more_body": True,
                }
            )
            await pump(req.receive, req.send, listener.queue)
        finally:
            self._open.discard(listener)
            hub.fanout.remove(listener)

    def close_tokens(self, live: frozenset[int]) -> int:
        """End the streams of tokens no longer valid; how many ended."""
        streams = [s for s in self._open if s.token_id not in live]
        for stream in streams:
            self._open.discard(stream)
            stream.queue.close()
        return len(streams)

    def close_all(self) -> None:
        for stream in list(self._open):
            stream.queue.close()
        self._open.clear()


class ListenStream:
    """A modern ``subscriptions/listen`` stream: only what the client opted in to."""

    _FLAGS = {
        "notifications/tools/list_changed": "toolsListChanged",
        "notifications/prompts/list_changed": "promptsListChanged",
        "notifications/resources/list_changed": "resourcesListChanged",
    }

    def __init__(self, subscription_id: object, wanted: JSON, token_id: int, limit: int) -> None:
        self.id = subscription_id
        self.token_id = token_id
        # Only change notifications come here: coalesced per kind (and URI) when the
        # client is slow, so the queue stays small however fast a server says them.
        self.queue = FrameQueue(limit)
        self.accepted: JSON = {}
        for flag in self._FLAGS.values():
            if wanted.get(flag) is True:
                self.accepted[flag] = True
        uris = wanted.get("resourceSubscriptions")
        if isinstance(uris, list):
            self.accepted["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]

    def restrict(self, uris: list[str]) -> None:
        """Acknowledge only the resource subscriptions that could be made upstream."""
        if "resourceSubscriptions" in self.accepted:
            self.accepted["resourceSubscriptions"] = uris

    def acknowledgement(self) -> bytes:
        return sse.event(
            rpc.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/subscriptions/acknowledged",
                    "params": {
                        "_meta": {v.META_SUBSCRIPTION_ID: self.id},
                        "notifications": self.accepted,
                    },
                }
            )
        )

    def wants(self, method: str, detail: str | None) -> bool:
        # Resource updates are not asked about: the fan-out sends them to the holders.
        flag = self._FLAGS.get(method)
        return flag is not None and self.accepted.get(flag) is True

    def deliver(self, message: JSON) -> None:
        out = dict(message)
        params = dict(out.get("params") or {})
        meta = dict(params.get("_meta") or {})
        meta[v.META_SUBSCRIPTION_ID] = self.id
        params["_meta"] = meta
        out["params"] = params
        uri = params.get("uri")
        key = coalesce_key(str(out.get("method")), uri if isinstance(uri, str) else None)
        self.queue.put(sse.event(rpc.dumps(out)), key=key)


async def standalone(req: Request, session: LegacySession) -> None:
    """A legacy session's GET stream: the notifications no request asked for, or, with
    ``Last-Event-ID``, the rest of a stream the client lost."""
    receive, send = req.receive, req.send
    if b"text/event-stream" not in req.headers.get(b"accept", b""):
        raise HttpError(
            406, json_error_body(rpc.INVALID_REQUEST, "Accept must include text/event-stream")
        )
    sid_header = [(b"mcp-session-id", session.id.encode())]
    last = req.headers.get(b"last-event-id")
    if last is not None and session.resumable:
        await _resume(receive, send, session, last.decode("latin-1"), sid_header)
        return
    if session.standalone is not None:
        raise HttpError(409, json_error_body(rpc.INVALID_REQUEST, "A stream is already open"))
    queue = session.new_queue()
    session.standalone = queue
    session.standalone_stream = session.new_stream()
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": sse.SSE_HEADERS + sid_header,
            }
        )
        await send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
        await pump(receive, send, queue)
    finally:
        if session.standalone is queue:
            session.standalone = None


async def _resume(
    receive: Receive,
    send: Send,
    session: LegacySession,
    last: str,
    sid_header: list[tuple[bytes, bytes]],
) -> None:
    stream_part, _, seq_part = last.partition("-")
    try:
        stream_id, seq = int(stream_part), int(seq_part)
    except ValueError as exc:
        raise HttpError(
            400, json_error_body(rpc.INVALID_REQUEST, "Malformed Last-Event-ID")
        ) from exc
    stream = session.streams.get(stream_id)
    if stream is None:
        raise HttpError(404, json_error_body(rpc.INVALID_REQUEST, "Unknown stream"))
    queue = session.new_queue()
    # What the replay buffer still holds goes out whole (it is bounded by bytes).
    for frame in session.events_after(stream_id, seq):
        queue.put(frame, essential=True)
    if stream is session.standalone_stream:
        if session.standalone is not None:
            session.standalone.close()  # the stream this one takes over ends
        session.standalone = queue
    elif stream.done:
        queue.close()
    else:
        if stream.follower is not None:
            stream.follower.close()
        stream.follower = queue
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": sse.SSE_HEADERS + sid_header,
            }
        )
        await pump(receive, send, queue)
    finally:
        # Gone: nothing may pile up for a reader that left (the replay buffer keeps
        # what a later reconnect needs), and the session may idle out again.
        if session.standalone is queue:
            session.standalone = None
        if stream.follower is queue:
            stream.follower = None
