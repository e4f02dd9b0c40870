"""The API application: its routes, its error shape, and its limits, assembled.

Owns :func:`build_api` (the ASGI app the MCP endpoint hands every path it does not
serve) and :func:`disabled_api` (the answer when the control plane is off: a problem
document saying so and how to turn it on). Also the request limits that apply before any
route: a body larger than the limit is refused from its declared length, and a body
that is not JSON where JSON is expected is refused. :class:`Guarded` puts the body limit
and the per-address rate limits in front of the API and of the dashboard alike. It must
never serve a route without the problem handlers in place, and never answer a path
outside ``/api`` with anything but a 404 (the dashboard, web/, serves those).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gigmcp.api import problems, ratelimit
from gigmcp.api.context import ApiConfig
from gigmcp.api.routes import (
    account,
    catalog,
    connections,
    oidc,
    profiles,
    remote,
    servers,
    users,
)
from gigmcp.errors import GigError, ProtocolError

HOW_TO_ENABLE = (
    "the control plane is off: configure an identity provider (GIG_OIDC_ISSUER, "
    "GIG_OIDC_CLIENT_ID, GIG_OIDC_REDIRECT_URL), or listen on loopback only to sign in "
    "with the one-time link 'gigmcp login-link' prints"
)


def build_api(cfg: ApiConfig) -> ASGIApp:
    """The API alone behind its guards (the gateway serves it with the dashboard:
    web/app.py)."""
    api = api_app(cfg)
    return Guarded(
        api, cfg.max_body_bytes, ratelimit.parse_proxies(cfg.trusted_proxies), cfg.address_rate
    )


def api_app(cfg: ApiConfig) -> FastAPI:
    """The API's routes and problem handlers, without the guards (whoever serves it puts
    :class:`Guarded` in front)."""
    api = FastAPI(
        title="Gig'MCP control plane",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    api.state.config = cfg
    api.add_exception_handler(GigError, problems.gig_error)
    api.add_exception_handler(RequestValidationError, problems.validation)
    api.add_exception_handler(StarletteHTTPException, problems.http_error)
    api.add_exception_handler(Exception, problems.unexpected)
    api.include_router(account.router)
    api.include_router(oidc.router)
    api.include_router(profiles.router)
    api.include_router(users.router)
    api.include_router(servers.router)
    api.include_router(catalog.router)
    api.include_router(connections.router)
    api.include_router(remote.router)

    @api.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    api.state.user_buckets = ratelimit.Buckets(cfg.user_rate)
    return api


class BodyTooLarge(ProtocolError):
    """Raised into the route that reads past the limit, after the 413 was sent."""


class Guarded:
    """The API behind two guards that must hold whatever a route does: a body is never
    read past the limit (declared or chunked: the bytes are counted as they arrive, so
    a chunked upload cannot make the gateway buffer it before anyone is authenticated),
    and an error no handler answered ends as the generic problem here instead of
    escaping to the server's log a second time."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        proxies: tuple[ratelimit.Network, ...] = (),
        calls: ratelimit.Rate = ratelimit.API_PER_ADDRESS,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.proxies = proxies
        self.sign_ins = ratelimit.Buckets(ratelimit.SIGN_IN)
        self.calls = ratelimit.Buckets(calls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1") or None
        address = ratelimit.client_address(peer, forwarded, self.proxies)
        path: str = scope.get("path", "")
        sign_in = path.startswith("/api/auth/")
        # Sign-in: only failed attempts count (a person signing in is never refused).
        allowed = self.sign_ins.has(address) if sign_in else self.calls.allow(address)
        if not allowed:
            limited = problems.problem(
                429,
                "rate-limited",
                "too many requests; try again later",
                headers={"Retry-After": "60"},
            )
            await limited(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not refused:
                    # Answered here, at once; whatever the route says after is dropped.
                    refused = True
                    if not started:
                        await self._too_large(scope, receive, send)
                    raise BodyTooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                if sign_in and message["status"] >= 400:
                    self.sign_ins.allow(address)
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge:
            pass
        except Exception:
            if not started:
                # Logged with its reference by problems.unexpected already.
                response = problems.problem(500, "internal", "the gateway could not answer")
                await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the body is over {self.max_body} bytes"
        await problems.problem(413, "too-large", detail)(scope, receive, send)


def disabled_api() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = problems.problem(404, "control_plane_disabled", HOW_TO_ENABLE)
        await response(scope, receive, send)

    return app
