"""Legacy sessions over Streamable HTTP (2024-11-05 … 2025-11-25), the endpoint's side.

Owns ``initialize`` (a session bound to the token, put on the hub's fan-out until it
ends, however it ends), messages on a session (responses to the gateway's questions,
``notifications/cancelled`` and ``roots/list_changed``, requests answered on a JSON or
SSE channel that stamps event ids for resumption), the log level a session asked for,
and GET and DELETE on a named session. Sessions themselves are endpoint/sessions.py.

It must never serve a session to another token (a session id with the wrong token is
answered as unknown), and never treat a legacy client's disconnect as cancellation.
"""

from __future__ import annotations

import asyncio

from gigmcp.core.jsontypes import JSON
from gigmcp.core.server_info import GATEWAY_INFO
from gigmcp.endpoint.channel import ResponseChannel
from gigmcp.endpoint.http import HttpError, respond, rpc_http_error
from gigmcp.endpoint.listen import standalone
from gigmcp.endpoint.request import NULL_SINK, Request
from gigmcp.endpoint.security import json_error_body
from gigmcp.endpoint.sessions import LegacySession, SessionLimit, SessionStore
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import Kind, RpcError
from gigmcp.router.context import RequestContext
from gigmcp.router.hub import ProfileHub


class Legacy:
    def __init__(self, sessions: SessionStore, ask_timeout: float) -> None:
        self.sessions = sessions
        self._timeout = ask_timeout

    async def initialize(self, req: Request, msg: JSON) -> None:
        """``initialize``: a new session, bound to the token, listening on the hub."""
        grant, hub = req.grant, req.hub
        params = msg.get("params") or {}
        requested = params.get("protocolVersion")
        caps = params.get("capabilities")
        if not isinstance(requested, str) or not isinstance(caps, dict):
            raise rpc_http_error(
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
        await respond(req.send, 200, body, [(b"mcp-session-id", session.id.encode())], json=True)

    async def post(self, req: Request, msg: JSON, kind: Kind, session_id: bytes) -> None:
        """A message on a session the client names with ``Mcp-Session-Id``."""
        grant, send = req.grant, req.send
        session = self.sessions.get(session_id.decode("latin-1"), grant.profile_id, grant.token_id)
        if session is None:
            raise HttpError(
                404, json_error_body(rpc.INVALID_REQUEST, "Session not found", msg.get("id"))
            )
        header_version = req.headers.get(b"mcp-protocol-version")
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
            await respond(send, 202, b"", sid_header)
            return
        if kind is Kind.NOTIFICATION:
            _notification(session, msg, req.hub)
            await respond(send, 202, b"", sid_header)
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
            sink=NULL_SINK,
            log_level=session.log_level,
            session_id=session.id,
            listener=session.listener,
        )
        channel = ResponseChannel(
            send,
            accepts_sse=req.accepts_sse,
            extra_headers=sid_header,
            session=session,
            ask_timeout=self._timeout,
        )
        ctx.sink = channel
        task = asyncio.ensure_future(req.hub.handle(ctx, msg))
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

    def _named_session(self, req: Request) -> LegacySession:
        grant = req.grant
        sid = req.headers.get(b"mcp-session-id")
        if sid is None:
            # 2026-07-28 has no GET stream and no DELETE; older clients name their session.
            raise HttpError(405, b"", [(b"allow", b"POST")])
        session = self.sessions.get(sid.decode("latin-1"), grant.profile_id, grant.token_id)
        if session is None:
            raise HttpError(404, json_error_body(rpc.INVALID_REQUEST, "Session not found"))
        return session

    async def get(self, req: Request) -> None:
        """GET: the session's standalone stream (endpoint/listen.py)."""
        await standalone(req, self._named_session(req))

    async def delete(self, req: Request) -> None:
        session = self._named_session(req)
        self.sessions.remove(session.id)  # its listener goes with it (Session.on_close)
        await respond(req.send, 204, b"")


def _notification(session: LegacySession, msg: JSON, hub: ProfileHub) -> None:
    method = msg["method"]
    params = msg.get("params") or {}
    if method == "notifications/cancelled":
        task = session.inflight.get(params.get("requestId"))
        if task is not None:
            task.cancel()
    elif method == "notifications/roots/list_changed":
        hub.roots_changed()
