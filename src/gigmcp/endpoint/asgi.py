"""The MCP endpoint ``/mcp/p/<profile>``: Streamable HTTP, server side, every revision.

Raw ASGI on purpose: this is the hot path, and a framework's request objects, routing
and middleware would cost more than the whole hop should. Order of checks on every
request: path → bearer token (nothing happens without a valid one, so no server starts)
→ Origin → size → JSON-RPC shape → era. Modern (2026-07-28) requests are served
statelessly; ``initialize`` or ``Mcp-Session-Id`` select a legacy session. Everything
else (``/api``, the dashboard) goes to the ``fallback`` app.

It must never answer with a traceback or a 500 for bad input, never echo a token, and
never hold a session usable by another token. A token that stops being valid (revoked,
expired, its profile deleted) loses its sessions and its GET and listen streams as soon
as the router's watcher sees the store change; idle sessions are swept periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gigmcp.endpoint import sse
from gigmcp.endpoint.buffers import BUFFER_BYTES, FrameQueue, coalesce_key
from gigmcp.endpoint.channel import ResponseChannel
from gigmcp.endpoint.security import bearer, decode_header_value, json_error_body, origin_allowed
from gigmcp.endpoint.sessions import LegacySession, SessionLimit, SessionStore
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import Kind, RpcError
from gigmcp.router.context import RequestContext
from gigmcp.router.gateway import Router
from gigmcp.router.hub import GATEWAY_INFO, ProfileHub
from gigmcp.store.views import TokenGrant

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/mcp/p/"
# Methods whose name the transport mirrors into Mcp-Name, and the param it comes from.
_NAME_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    # The tasks extension: Mcp-Name carries the task id, for routing to its replica.
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
_KEEPALIVE_SECONDS = 15.0


class HttpError(Exception):
    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []


def _rpc_http_error(status: int, err: RpcError, request_id: object = None) -> HttpError:
    return HttpError(status, rpc.dumps(err.response(request_id)))  # type: ignore[arg-type]


class McpEndpoint:
    def __init__(
        self,
        router: Router,
        *,
        allowed_origins: frozenset[str] = frozenset(),
        max_body_bytes: int = 4 * 1024 * 1024,
        request_timeout: float = 120.0,
        public_url: str | None = None,
        fallback: ASGIApp | None = None,
        sessions: SessionStore | None = None,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self.router = router
        self.sessions = sessions or SessionStore(buffer_bytes=buffer_bytes)
        self._buffer = buffer_bytes
        # Open modern listen streams, for closing them when their token goes.
        self._listening: set[_ListenStream] = set()
        self._sweeper: asyncio.Task[None] | None = None
        router.on_change.append(self.drop_invalid_tokens)
        self._origins = allowed_origins
        self._max_body = max_body_bytes
        self._timeout = request_timeout
        self._public_url = public_url
        self._fallback = fallback

    # ================================================================ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._fallback is not None:
            await self._fallback(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            if self._fallback is not None:
                await self._fallback(scope, receive, send)
            else:
                await _plain(send, 404, b"Not Found")
            return
        slug = path[len(PREFIX) :].rstrip("/")
        try:
            await self._serve(scope, receive, send, slug)
        except HttpError as exc:
            await _respond(send, exc.status, exc.body, exc.headers)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, slug: str) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        grant = self._authenticate(headers, slug)
        if not origin_allowed(headers, self._origins):
            raise HttpError(
                403, json_error_body(rpc.INVALID_REQUEST, "Forbidden: origin not allowed")
            )
        # authenticate() already brought the catalog up to date; hubs of other profiles
        # are refreshed by the router's watcher.
        view = self.router.catalog.profile(grant.profile_id)
        if view is None:
            raise self._unauthorized()
        hub = self.router.hub(view)
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, headers, grant, hub)
        elif method == "GET":
            await self._get(receive, send, headers, grant, hub)
        elif method == "DELETE":
            await self._delete(send, headers, grant)
        else:
            raise HttpError(405, b"", [(b"allow", b"GET, POST, DELETE")])

    # ================================================================ checks

    def _unauthorized(self) -> HttpError:
        challenge = 'Bearer realm="gigmcp", error="invalid_token"'
        return HttpError(
            401,
            json_error_body(rpc.INVALID_REQUEST, "Unauthorized: a valid profile token is required"),
            [(b"www-authenticate", challenge.encode())],
        )

    def _authenticate(self, headers: dict[bytes, bytes], slug: str) -> TokenGrant:
        token = bearer(headers)
        grant = self.router.catalog.authenticate(token) if token is not None else None
        # A token of another profile is as good as none: same answer, nothing started.
        if grant is None or grant.profile_slug != slug:
            raise self._unauthorized()
        return grant

    async def _body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self._max_body:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, b"")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> HttpError:
        return HttpError(
            413,
            json_error_body(
                rpc.INVALID_REQUEST, f"Request body larger than {self._max_body} bytes"
            ),
        )

    # ================================================================ POST

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        grant: TokenGrant,
        hub: ProfileHub,
    ) -> None:
        body = await self._body(receive, headers)
        try:
            msg = rpc.loads(body)
            kind = rpc.classify(msg)
        except RpcError as err:
            raise _rpc_http_error(400, err) from err
        accept = headers.get(b"accept", b"")
        accepts_sse = b"text/event-stream" in accept or b"*/*" in accept
        session_id = headers.get(b"mcp-session-id")
        if session_id is not None:
            session = self.sessions.get(
                session_id.decode("latin-1"), grant.profile_id, grant.token_id
            )
            if session is None:
                raise HttpError(
                    404, json_error_body(rpc.INVALID_REQUEST, "Session not found", msg.get("id"))
                )
            await self._legacy(send, headers, msg, kind, session, hub, grant, accepts_sse)
            return
        if kind is Kind.REQUEST and msg["method"] == "initialize":
            await self._initialize(send, headers, msg, grant, hub)
            return
        await self._modern(scope, receive, send, headers, msg, kind, hub, grant, accepts_sse)

    # ---------------------------------------------------------------- modern

    def _modern_context(
        self, headers: dict[bytes, bytes], msg: JSON, grant: TokenGrant
    ) -> tuple[RequestContext | None, str]:
        params = msg.get("params") or {}
        meta = params.get("_meta")
        rid = msg.get("id")
        version = meta.get(v.META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
        header_version = headers.get(b"mcp-protocol-version")
        if version is None:
            if header_version is not None and v.is_legacy(header_version.decode("latin-1")):
                raise HttpError(
                    400,
                    json_error_body(
                        rpc.INVALID_REQUEST,
                        "Bad Request: no Mcp-Session-Id; send initialize first",
                        rid,
                    ),
                )
            raise _rpc_http_error(
                400,
                RpcError(
                    rpc.INVALID_PARAMS,
                    f"Invalid params: _meta[{v.META_PROTOCOL_VERSION!r}] is required",
                ),
                rid,
            )
        assert isinstance(meta, dict)
        if not isinstance(version, str) or not v.is_modern(version):
            raise _rpc_http_error(
                400,
                RpcError(
                    rpc.UNSUPPORTED_PROTOCOL_VERSION,
                    "Unsupported protocol version",
                    {"supported": list(v.ALL_VERSIONS), "requested": version},
                ),
                rid,
            )
        self._check_headers(headers, msg, version)
        caps = meta.get(v.META_CLIENT_CAPABILITIES)
        if not isinstance(caps, dict):
            raise _rpc_http_error(
                400,
                RpcError(
                    rpc.INVALID_PARAMS,
                    f"Invalid params: _meta[{v.META_CLIENT_CAPABILITIES!r}] is required",
                ),
                rid,
            )
        info = meta.get(v.META_CLIENT_INFO)
        level = meta.get(v.META_LOG_LEVEL)
        if level is not None and level not in v.LOG_LEVELS:
            raise _rpc_http_error(
                400,
                RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown log level {level!r}"),
                rid,
            )
        ctx = RequestContext(
            era="modern",
            protocol_version=version,
            client_capabilities=caps,
            client_info=info if isinstance(info, dict) else None,
            token_id=grant.token_id,
            user_id=grant.user_id,
            profile_id=grant.profile_id,
            sink=_NULL_SINK,
            log_level=level if isinstance(level, str) else None,
        )
        mirrored = {
            k[len(b"mcp-param-") :].decode("latin-1").lower(): val
            for k, val in headers.items()
            if k.startswith(b"mcp-param-")
        }
        if mirrored:
            ctx.extra["param_headers"] = mirrored
        return ctx, version

    def _check_headers(self, headers: dict[bytes, bytes], msg: JSON, version: str) -> None:
        rid = msg.get("id")

        def mismatch(text: str) -> HttpError:
            return _rpc_http_error(
                400, RpcError(rpc.HEADER_MISMATCH, f"Header mismatch: {text}"), rid
            )

        header_version = headers.get(b"mcp-protocol-version")
        if header_version is None:
            raise mismatch("MCP-Protocol-Version header is required")
        if header_version.decode("latin-1") != version:
            raise mismatch("MCP-Protocol-Version header does not match _meta")
        method_header = headers.get(b"mcp-method")
        if method_header is None:
            raise mismatch("Mcp-Method header is required")
        if method_header.decode("latin-1") != msg["method"]:
            raise mismatch("Mcp-Method header does not match the body")
        field = _NAME_PARAM.get(msg["method"])
        if field is not None:
            raw = headers.get(b"mcp-name")
            if raw is None:
                raise mismatch("Mcp-Name header is required")
            if decode_header_value(raw) != (msg.get("params") or {}).get(field):
                raise mismatch("Mcp-Name header does not match the body")

    async def _modern(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        msg: JSON,
        kind: Kind,
        hub: ProfileHub,
        grant: TokenGrant,
        accepts_sse: bool,
    ) -> None:
        if kind is Kind.RESPONSE:
            raise HttpError(
                400, json_error_body(rpc.INVALID_REQUEST, "Clients must not send responses here")
            )
        if kind is Kind.NOTIFICATION:
            # 2026-07-28 defines no client notifications over HTTP; accept and ignore.
            await _respond(send, 202, b"")
            return
        ctx, _version = self._modern_context(headers, msg, grant)
        assert ctx is not None
        if msg["method"] == "subscriptions/listen":
            await self._listen(receive, send, msg, ctx, hub)
            return
        channel = ResponseChannel(
            send, accepts_sse=accepts_sse, extra_headers=[], buffer_bytes=self._buffer
        )
        ctx.sink = channel
        response = await self._run_cancellable(receive, hub.handle(ctx, msg))
        if response is None:
            await channel.close_without_answer()
            return
        status = 200
        err = response.get("error")
        if isinstance(err, dict) and err.get("code") == rpc.METHOD_NOT_FOUND:
            status = 404
        await channel.finish(response, status)

    async def _run_cancellable(self, receive: Receive, work: Awaitable[JSON]) -> JSON | None:
        """Run ``work``; if the client disconnects first, cancel it (modern revisions make a
        closed stream the cancellation signal) and return None. The work runs in this task
        and a watcher is armed only for calls that outlast a short grace period, so a quick
        call costs no extra task."""
        me = asyncio.current_task()
        assert me is not None
        loop = asyncio.get_running_loop()
        watcher: asyncio.Task[None] | None = None
        fired = False

        async def watch() -> None:
            nonlocal fired
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    fired = True
                    me.cancel()
                    return

        def arm() -> None:
            nonlocal watcher
            watcher = loop.create_task(watch())

        timer = loop.call_later(0.2, arm)
        try:
            return await work
        except asyncio.CancelledError:
            if fired and me.uncancel() == 0:
                return None
            raise
        finally:
            timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()

    async def _listen(
        self, receive: Receive, send: Send, msg: JSON, ctx: RequestContext, hub: ProfileHub
    ) -> None:
        params = msg.get("params") or {}
        wanted = params.get("notifications")
        if wanted is not None and not isinstance(wanted, dict):
            raise _rpc_http_error(
                400,
                RpcError(rpc.INVALID_PARAMS, "Invalid params: notifications must be an object"),
                msg["id"],
            )
        listener = _ListenStream(msg["id"], wanted or {}, ctx.token_id, self._buffer)
        # On the fan-out before subscribing: subscriptions are held by a listener, and
        # whatever it held is released when it is removed, however the stream ends.
        hub.fanout.add(listener)
        self._listening.add(listener)
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
            await send({"type": "http.response.start", "status": 200, "headers": sse.SSE_HEADERS})
            await send(
                {
                    "type": "http.response.body",
                    "body": listener.acknowledgement(),
                    "more_body": True,
                }
            )
            await _pump(receive, send, listener.queue)
        finally:
            self._listening.discard(listener)
            hub.fanout.remove(listener)

    # ---------------------------------------------------------------- legacy

    async def _initialize(
        self, send: Send, headers: dict[bytes, bytes], msg: JSON, grant: TokenGrant, hub: ProfileHub
    ) -> None:
        params = msg.get("params") or {}
        requested = params.get("protocolVersion")
        caps = params.get("capabilities")
        if not isinstance(requested, str) or not isinstance(caps, dict):
            raise _rpc_http_error(
                400,
                RpcError(
                    rpc.INVALID_PARAMS, "Invalid params: protocolVersion and capabilities required"
                ),
                msg["id"],
            )
        version = requested if v.is_legacy(requested) else v.LEGACY_VERSIONS[0]
        info = params.get("clientInfo")
        try:
            session = self.sessions.create(
                grant.profile_id,
                grant.token_id,
                version,
                caps,
                info if isinstance(info, dict) else None,
            )
        except SessionLimit as exc:
            raise HttpError(
                503,
                json_error_body(rpc.INVALID_REQUEST, str(exc), msg["id"]),
                [(b"retry-after", b"60")],
            ) from exc
        # The session listens on the hub until it ends, however it ends (DELETE, expiry,
        # eviction, its token revoked): removal releases its resource subscriptions.
        listener = session.listener
        fanout = hub.fanout
        fanout.add(listener)
        session.on_close.append(lambda: fanout.remove(listener))
        result = {
            "protocolVersion": version,
            "capabilities": hub.capabilities(),
            "serverInfo": GATEWAY_INFO,
            "instructions": hub.instructions(),
        }
        body = rpc.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        await _respond(send, 200, body, [(b"mcp-session-id", session.id.encode())], json=True)

    async def _legacy(
        self,
        send: Send,
        headers: dict[bytes, bytes],
        msg: JSON,
        kind: Kind,
        session: LegacySession,
        hub: ProfileHub,
        grant: TokenGrant,
        accepts_sse: bool,
    ) -> None:
        header_version = headers.get(b"mcp-protocol-version")
        if (
            header_version is not None
            and header_version.decode("latin-1") != session.protocol_version
        ):
            raise HttpError(
                400,
                json_error_body(
                    rpc.INVALID_REQUEST,
                    f"Bad Request: MCP-Protocol-Version does not match the session "
                    f"({session.protocol_version})",
                    msg.get("id"),
                ),
            )
        sid_header = [(b"mcp-session-id", session.id.encode())]
        if kind is Kind.RESPONSE:
            session.answer(msg)
            await _respond(send, 202, b"", sid_header)
            return
        if kind is Kind.NOTIFICATION:
            self._legacy_notification(session, msg, hub)
            await _respond(send, 202, b"", sid_header)
            return
        method = msg["method"]
        if method == "logging/setLevel":
            level = (msg.get("params") or {}).get("level")
            if level in v.LOG_LEVELS:
                session.log_level = str(level)
        ctx = RequestContext(
            era="legacy",
            protocol_version=session.protocol_version,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            token_id=grant.token_id,
            user_id=grant.user_id,
            profile_id=grant.profile_id,
            sink=_NULL_SINK,
            log_level=session.log_level,
            session_id=session.id,
            listener=session.listener,
        )
        channel = ResponseChannel(
            send,
            accepts_sse=accepts_sse,
            extra_headers=sid_header,
            session=session,
            ask_timeout=self._timeout,
        )
        ctx.sink = channel
        task = asyncio.ensure_future(hub.handle(ctx, msg))
        key = msg["id"]
        session.inflight[key] = task
        task.add_done_callback(lambda _t: session.inflight.pop(key, None))
        try:
            response = await task
        except asyncio.CancelledError:
            if task.cancelled():
                # notifications/cancelled: the client no longer wants an answer.
                await channel.close_without_answer()
                return
            raise
        await channel.finish(response)

    def _legacy_notification(self, session: LegacySession, msg: JSON, hub: ProfileHub) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "notifications/cancelled":
            task = session.inflight.get(params.get("requestId"))
            if task is not None:
                task.cancel()
        elif method == "notifications/roots/list_changed":
            hub.roots_changed()

    # ================================================================ GET / DELETE

    def _named_session(self, headers: dict[bytes, bytes], grant: TokenGrant) -> LegacySession:
        sid = headers.get(b"mcp-session-id")
        if sid is None:
            # 2026-07-28 has no GET stream and no DELETE; older clients name their session.
            raise HttpError(405, b"", [(b"allow", b"POST")])
        session = self.sessions.get(sid.decode("latin-1"), grant.profile_id, grant.token_id)
        if session is None:
            raise HttpError(404, json_error_body(rpc.INVALID_REQUEST, "Session not found"))
        return session

    async def _get(
        self,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        grant: TokenGrant,
        hub: ProfileHub,
    ) -> None:
        session = self._named_session(headers, grant)
        if b"text/event-stream" not in headers.get(b"accept", b""):
            raise HttpError(
                406, json_error_body(rpc.INVALID_REQUEST, "Accept must include text/event-stream")
            )
        sid_header = [(b"mcp-session-id", session.id.encode())]
        last = headers.get(b"last-event-id")
        if last is not None and session.resumable:
            await self._resume(receive, send, session, last.decode("latin-1"), sid_header)
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
            await _pump(receive, send, queue)
        finally:
            if session.standalone is queue:
                session.standalone = None

    async def _resume(
        self,
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
            await _pump(receive, send, queue)
        finally:
            # Gone: nothing may pile up for a reader that left (the replay buffer keeps
            # what a later reconnect needs), and the session may idle out again.
            if session.standalone is queue:
                session.standalone = None
            if stream.follower is queue:
                stream.follower = None

    async def _delete(self, send: Send, headers: dict[bytes, bytes], grant: TokenGrant) -> None:
        session = self._named_session(headers, grant)
        self.sessions.remove(session.id)  # its listener goes with it (Session.on_close)
        await _respond(send, 204, b"")

    # ================================================================ housekeeping

    def drop_invalid_tokens(self) -> None:
        """End the sessions and listen streams of every token that is no longer valid
        (revoked, expired, profile gone). Called by the router when the store changed and
        by the sweeper (expiry changes nothing in the store)."""
        live = self.router.catalog.live_token_ids()
        ended = self.sessions.close_tokens(live)
        streams = [s for s in self._listening if s.token_id not in live]
        for stream in streams:
            self._listening.discard(stream)
            stream.queue.close()
        if ended or streams:
            log.info(
                "closed %d session(s) and %d listen stream(s) of tokens no longer valid",
                ended,
                len(streams),
            )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sessions.sweep_interval)
            try:
                self.sessions.expire()
                self.drop_invalid_tokens()
            except Exception:
                log.exception("session sweep failed")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for stream in list(self._listening):
            stream.queue.close()
        self._listening.clear()
        self.sessions.close_all()


# ==================================================================== helpers


class _NullSink:
    can_ask = False

    def notify(self, message: JSON) -> None:
        return None

    async def ask(self, method: str, params: JSON | None) -> JSON:
        raise RpcError(rpc.METHOD_NOT_FOUND, "no channel")


_NULL_SINK = _NullSink()


class _ListenStream:
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


async def _pump(receive: Receive, send: Send, queue: FrameQueue) -> None:
    """Write queued SSE frames until the queue closes or the client disconnects."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        while not watcher.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=_KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if watcher in done:
                    return
                await send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
                continue
            item = getter.result()
            if item is None:
                break
            await send({"type": "http.response.body", "body": item[0], "more_body": True})
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        return
    finally:
        watcher.cancel()


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    json: bool | None = None,
) -> None:
    out = list(headers or [])
    if body and (json or json is None):
        out.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["McpEndpoint"]
