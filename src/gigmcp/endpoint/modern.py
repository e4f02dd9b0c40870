"""Modern (2026-07-28) requests: stateless, every one carrying its own ``_meta``.

Owns what a modern POST must carry and the checks against it: the protocol version and
client capabilities in ``_meta``, the ``MCP-Protocol-Version``, ``Mcp-Method`` and
``Mcp-Name`` headers matching the body, ``Mcp-Param-*`` headers handed to the router;
the request's answer channel (JSON, or SSE once something streams); and cancellation by
disconnect, which these revisions make the client's way to cancel.
``subscriptions/listen`` goes to endpoint/listen.py.

It must never serve a request whose headers and body disagree, never hold state between
requests, and never cost a task per quick call (the disconnect watcher is armed only for
calls that outlast a short grace period).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from gigmcp.core.asgi import Receive
from gigmcp.core.jsontypes import JSON
from gigmcp.endpoint.channel import ResponseChannel
from gigmcp.endpoint.http import HttpError, respond, rpc_http_error
from gigmcp.endpoint.listen import Listening
from gigmcp.endpoint.relay import Relay
from gigmcp.endpoint.request import NULL_SINK, Request
from gigmcp.endpoint.security import decode_header_value, json_error_body
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.headers import NAME_PARAM
from gigmcp.mcp.jsonrpc import Kind, RpcError
from gigmcp.router.context import RequestContext


class Modern:
    def __init__(self, listening: Listening, buffer_bytes: int) -> None:
        self._listening = listening
        self._buffer = buffer_bytes
        # Set when replicas share a PostgreSQL database: requests that continue what
        # another replica holds are run there.
        self.relay: Relay | None = None

    async def handle(self, req: Request, msg: JSON, kind: Kind) -> None:
        if kind is Kind.RESPONSE:
            raise HttpError(
                400, json_error_body(rpc.INVALID_REQUEST, "Clients must not send responses here")
            )
        if kind is Kind.NOTIFICATION:
            # 2026-07-28 defines no client notifications over HTTP; accept and ignore.
            await respond(req.send, 202, b"")
            return
        ctx = self._context(req, msg)
        if msg["method"] == "subscriptions/listen":
            await self._listening.listen(req, msg, ctx)
            return
        channel = ResponseChannel(
            req.send, accepts_sse=req.accepts_sse, extra_headers=[], buffer_bytes=self._buffer
        )
        ctx.sink = channel
        holder = self.relay.holder(ctx.token_id, msg) if self.relay is not None else None
        work = (
            req.hub.handle(ctx, msg)
            if holder is None or self.relay is None
            else self.relay.forward(holder, ctx, msg)
        )
        response = await _run_cancellable(req.receive, work)
        if response is None:
            await channel.close_without_answer()
            return
        status = 200
        err = response.get("error")
        if isinstance(err, dict) and err.get("code") == rpc.METHOD_NOT_FOUND:
            status = 404
        await channel.finish(response, status)

    def _context(self, req: Request, msg: JSON) -> RequestContext:
        """The caller as the router sees it, from ``_meta`` checked against the headers."""
        headers, grant = req.headers, req.grant
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
            raise rpc_http_error(
                400,
                RpcError(
                    rpc.INVALID_PARAMS,
                    f"Invalid params: _meta[{v.META_PROTOCOL_VERSION!r}] is required",
                ),
                rid,
            )
        assert isinstance(meta, dict)
        if not isinstance(version, str) or not v.is_modern(version):
            raise rpc_http_error(
                400,
                RpcError(
                    rpc.UNSUPPORTED_PROTOCOL_VERSION,
                    "Unsupported protocol version",
                    {"supported": list(v.ALL_VERSIONS), "requested": version},
                ),
                rid,
            )
        _check_headers(headers, msg, version)
        caps = meta.get(v.META_CLIENT_CAPABILITIES)
        if not isinstance(caps, dict):
            raise rpc_http_error(
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
            raise rpc_http_error(
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
            sink=NULL_SINK,
            log_level=level if isinstance(level, str) else None,
        )
        mirrored = {
            k[len(b"mcp-param-") :].decode("latin-1").lower(): val
            for k, val in headers.items()
            if k.startswith(b"mcp-param-")
        }
        if mirrored:
            ctx.extra["param_headers"] = mirrored
        return ctx


def _check_headers(headers: dict[bytes, bytes], msg: JSON, version: str) -> None:
    rid = msg.get("id")

    def mismatch(text: str) -> HttpError:
        return rpc_http_error(400, RpcError(rpc.HEADER_MISMATCH, f"Header mismatch: {text}"), rid)

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
    field = NAME_PARAM.get(msg["method"])
    if field is not None:
        raw = headers.get(b"mcp-name")
        if raw is None:
            raise mismatch("Mcp-Name header is required")
        if decode_header_value(raw) != (msg.get("params") or {}).get(field):
            raise mismatch("Mcp-Name header does not match the body")


async def _run_cancellable(receive: Receive, work: Awaitable[JSON]) -> JSON | None:
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
