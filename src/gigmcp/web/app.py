"""The dashboard application, and the control plane it forms with the API.

Owns assembling the pages (each page module's router), the static files, and the
answers when something goes wrong: a page that needs a signed-in browser sends it to the
sign-in page (back to where it was afterwards); an error of the tree is an error page
with the same status the API would give; anything else is a generic page whose reference
is in the log. :func:`build_control_plane` puts the API (``/api``) and the dashboard
(everything else) behind the same guards. It must never answer a page without the
security headers, nor show a traceback or a secret.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gigmcp.api import problems, ratelimit
from gigmcp.api.app import Guarded, api_app, disabled_api
from gigmcp.api.context import ApiConfig
from gigmcp.errors import GigError
from gigmcp.web import render
from gigmcp.web.assets import YEAR, assets
from gigmcp.web.messages import translate
from gigmcp.web.pages import (
    account,
    audit,
    catalog,
    connections,
    credentials,
    oauth_apps,
    overview,
    profiles,
    servers,
    users,
)
from gigmcp.web.security import SignInNeeded, headers, viewer

log = logging.getLogger(__name__)
# In the order of the navigation: a page module with a NAV_ITEM is listed there.
PAGES = (
    account,
    overview,
    catalog,
    servers,
    profiles,
    credentials,
    connections,
    audit,
    users,
    oauth_apps,
)


def build_dashboard(cfg: ApiConfig) -> FastAPI:
    web = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    web.state.config = cfg
    web.add_exception_handler(SignInNeeded, _sign_in)
    web.add_exception_handler(GigError, _gig_error)
    web.add_exception_handler(RequestValidationError, _invalid)
    web.add_exception_handler(StarletteHTTPException, _http_error)
    web.add_exception_handler(Exception, _unexpected)
    assets()  # read (and the vendored files checked) at start-up, not at the first page
    web.add_api_route("/static/{name}", _static, methods=["GET", "HEAD"])
    for module in PAGES:
        web.include_router(module.router)
    web.state.nav = [m.NAV_ITEM for m in PAGES if getattr(m, "NAV_ITEM", None) is not None]
    return web


def build_control_plane(cfg: ApiConfig) -> ASGIApp:
    """``/api/…`` to the API, every other path to the dashboard, both behind the guards
    (body limit, per-address rate limits, the last-resort 500)."""
    api, web = api_app(cfg), build_dashboard(cfg)
    # One allowance per user for the API and the pages together.
    web.state.user_buckets = api.state.user_buckets

    async def split(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        target = api if path == "/api" or path.startswith("/api/") else web
        await target(scope, receive, send)

    return Guarded(
        split, cfg.max_body_bytes, ratelimit.parse_proxies(cfg.trusted_proxies), cfg.address_rate
    )


def disabled_control_plane() -> ASGIApp:
    """The answer when the control plane is off: the API's problem document under
    ``/api``, and a page saying how to turn it on everywhere else."""
    api = disabled_api()
    page = render.environment().get_template("disabled.html")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        if path == "/api" or path.startswith("/api/"):
            await api(scope, receive, send)
            return
        html = page.render(viewer=None, nav=[], here=path, csrf="", link_sign_in=False)
        response = Response(html, status_code=404, media_type="text/html; charset=utf-8")
        response.headers.update(headers(None))
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)

    return app


def _static(name: str) -> Response:
    found = assets().by_url.get(f"/static/{name}")
    if found is None:
        return Response(status_code=404)
    return Response(
        found.body,
        media_type=found.content_type,
        headers={
            "Cache-Control": f"public, max-age={YEAR}, immutable",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


async def _sign_in(request: Request, exc: Exception) -> Response:
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = (
        "/sign-in"
        if request.method != "GET" or back == "/"
        else f"/sign-in?return_to={quote(back, safe='')}"
    )
    return RedirectResponse(target, status_code=303)


async def _error_page(
    request: Request, status: int, detail: str, reference: str | None = None
) -> Response:
    key = {
        401: "error.signed_out",
        403: "error.forbidden",
        404: "error.not_found",
        409: "error.conflict",
        422: "error.invalid",
        429: "error.too_many",
        503: "error.unavailable",
    }.get(status, "error.invalid" if status < 500 else "error.internal")
    try:
        who = await run_in_threadpool(viewer, request)
    except Exception:  # an error page never needs a session; it shows one if it has it
        who = None
    return render.page(
        request,
        "error.html",
        who,
        {"heading": translate(key), "detail": detail, "reference": reference},
        status=status,
    )


async def _gig_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GigError)
    found = problems.status_of(exc)
    if found is None:
        return await _unexpected(request, exc)
    return await _error_page(request, found[0], str(exc))


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The field's name, never the value sent (it may be a secret in the wrong field).
    fields = ", ".join(
        ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        for err in exc.errors()
    )
    return await _error_page(request, 422, f"invalid value for {fields or 'the request'}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return await _error_page(request, exc.status_code, problems.title(exc.status_code))


async def _unexpected(request: Request, exc: Exception) -> Response:
    reference = secrets.token_hex(4)
    log.error(
        "dashboard error %s on %s %s", reference, request.method, request.url.path, exc_info=exc
    )
    return await _error_page(request, 500, problems.title(500), reference)
