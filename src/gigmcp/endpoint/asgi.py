"""The MCP endpoint ``/mcp/p/<profile>``: Streamable HTTP, server side, every revision.

Raw ASGI on purpose: this is the hot path, and a framework's request objects, routing
and middleware would cost more than the whole hop should. Order of checks on every
request: path → bearer token (nothing happens without a valid one, so no server starts)
→ Origin → size → JSON-RPC shape → era. Modern (2026-07-28) requests are served
statelessly; ``initialize`` or ``Mcp-Session-Id`` select a legacy session. Every other
path goes to the ``fallback`` app when one is given (the place for ``/api`` and the
dashboard, which are not built yet; none is given today) and is a 404 otherwise. This
module owns that order and the session sweeper; the handlers are endpoint/modern.py,
endpoint/legacy.py and endpoint/listen.py, each given one
:class:`~gigmcp.endpoint.request.Request`.

It must never answer with a traceback or a 500 for bad input, never echo a token, and
never hold a session usable by another token. A token that stops being valid (revoked,
expired, its profile deleted) loses its sessions and its GET and listen streams as soon
as the router's watcher sees the store change; idle sessions are swept periodically.
"""

from __future__ import annotations

import asyncio
import logging

from gigmcp.core import aio
from gigmcp.core.asgi import ASGIApp, Receive, Scope, Send
from gigmcp.core.views import TokenGrant
from gigmcp.endpoint.buffers import BUFFER_BYTES
from gigmcp.endpoint.http import HttpError, plain, respond, rpc_http_error
from gigmcp.endpoint.legacy import Legacy
from gigmcp.endpoint.listen import Listening
from gigmcp.endpoint.modern import Modern
from gigmcp.endpoint.relay import Relay
from gigmcp.endpoint.request import Request
from gigmcp.endpoint.security import bearer, json_error_body, origin_allowed
from gigmcp.endpoint.sessions import SessionStore
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.jsonrpc import Kind, RpcError
from gigmcp.router.gateway import Router
from gigmcp.telemetry import probes

log = logging.getLogger(__name__)

PREFIX = "/mcp/p/"


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
        # Open modern listen streams, for closing them when their token goes.
        self._listening = Listening(buffer_bytes)
        self._modern = Modern(self._listening, buffer_bytes)
        # Not ``sessions or ...``: an empty store is falsy (it has a length), and the
        # operator's idle timeout and caps would be replaced by the defaults.
        store = sessions if sessions is not None else SessionStore(buffer_bytes=buffer_bytes)
        self._legacy = Legacy(store, request_timeout)
        self._sweeper: asyncio.Task[None] | None = None
        router.on_change.append(self.drop_invalid_tokens)
        self._origins = allowed_origins
        self._max_body = max_body_bytes
        self._public_url = public_url
        self._fallback = fallback

    @property
    def relay(self) -> Relay | None:
        return self._modern.relay

    @relay.setter
    def relay(self, relay: Relay | None) -> None:
        self._modern.relay = relay

    @property
    def sessions(self) -> SessionStore:
        return self._legacy.sessions

    @sessions.setter
    def sessions(self, store: SessionStore) -> None:
        self._legacy.sessions = store

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
                await plain(send, 404, b"Not Found")
            return
        slug = path[len(PREFIX) :].rstrip("/")
        try:
            await self._serve(scope, receive, send, slug)
        except HttpError as exc:
            probes.http_rejected(exc.status)
            await respond(send, exc.status, exc.body, exc.headers)

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
        req = Request(scope, receive, send, headers, grant, self.router.hub(view))
        method = scope["method"]
        if method == "POST":
            await self._post(req)
        elif method == "GET":
            await self._legacy.get(req)
        elif method == "DELETE":
            await self._legacy.delete(req)
        else:
            raise HttpError(405, b"", [(b"allow", b"GET, POST, DELETE")])

    async def _post(self, req: Request) -> None:
        body = await req.body(self._max_body)
        try:
            msg = rpc.loads(body)
            kind = rpc.classify(msg)
        except RpcError as err:
            raise rpc_http_error(400, err) from err
        session_id = req.headers.get(b"mcp-session-id")
        if session_id is not None:
            await self._legacy.post(req, msg, kind, session_id)
        elif kind is Kind.REQUEST and msg["method"] == "initialize":
            await self._legacy.initialize(req, msg)
        else:
            await self._modern.handle(req, msg, kind)

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

    # ================================================================ housekeeping

    def drop_invalid_tokens(self) -> None:
        """End the sessions and listen streams of every token that is no longer valid
        (revoked, expired, profile gone). Called by the router when the store changed and
        by the sweeper (expiry changes nothing in the store)."""
        live = self.router.catalog.live_token_ids()
        ended = self.sessions.close_tokens(live)
        streams = self._listening.close_tokens(live)
        if ended or streams:
            log.info(
                "closed %d session(s) and %d listen stream(s) of tokens no longer valid",
                ended,
                streams,
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
        await aio.stop(self._sweeper)
        self._sweeper = None
        self._listening.close_all()
        self.sessions.close_all()


__all__ = ["McpEndpoint"]
