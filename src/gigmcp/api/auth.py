"""Who is calling the API, and whether a browser's change is its own.

Owns resolving a request to a :class:`Principal`: a personal API token in
``Authorization: Bearer gig_at_…`` (a script: no cookie is even looked at), or the
browser session in the session cookie; the CSRF rule for a browser's state-changing
request (the session's own token in ``X-CSRF-Token`` and an ``Origin`` or
``Sec-Fetch-Site`` that says the request comes from the gateway's own pages); and
setting and clearing the session cookie. It must never accept a profile token or any
other kind of secret here, never let a cookie-authenticated change through without both
checks, and never echo a presented secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response

from gigmcp.api import ratelimit
from gigmcp.api.context import ApiConfig
from gigmcp.control import apitokens, websessions
from gigmcp.control.actor import Actor
from gigmcp.errors import Forbidden, RateLimited, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Principal:
    actor: Actor
    kind: str  # "session" | "api"
    session: websessions.Current | None = None


def config(request: Request) -> ApiConfig:
    cfg: ApiConfig = request.app.state.config
    return cfg


def principal(request: Request) -> Principal:
    """The caller, or Unauthenticated. Also enforces CSRF on a browser's changes and
    each user's rate limit."""
    who = _principal(request)
    buckets: ratelimit.Buckets = request.app.state.user_buckets
    if not buckets.allow(f"user:{who.actor.real_user_id or who.actor.user_id}"):
        raise RateLimited("too many requests for this user; try again later")
    return who


def _principal(request: Request) -> Principal:
    cfg = config(request)
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("expected 'Authorization: Bearer <API token>'")
        resolved = apitokens.resolve(cfg.engine, token.strip())
        if resolved is None or (resolved.local and not cfg.login_links):
            raise Unauthenticated("the API token is unknown, revoked or expired")
        return Principal(resolved.actor, "api")
    current = websessions.resolve(cfg.engine, request.cookies.get(cfg.cookie_name), cfg.lifetimes)
    # The local administrator's sessions end with the embedded default: once an identity
    # provider is configured (or on a replica where links are off), they are worth nothing.
    if current is None or (current.local and not cfg.login_links):
        raise Unauthenticated("sign in first (or send an API token)")
    if request.method not in SAFE_METHODS:
        check_csrf(request, cfg, current)
    return Principal(current.actor, "session", current)


def check_csrf(request: Request, cfg: ApiConfig, current: websessions.Current) -> None:
    if not same_origin(request, cfg):
        raise Forbidden("cross-site request refused")
    if not current.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or wrong CSRF token (send it in X-CSRF-Token)")


def same_origin(request: Request, cfg: ApiConfig) -> bool:
    """The request comes from the gateway's own pages: its Origin is the public origin,
    or, without an Origin, the browser says ``Sec-Fetch-Site: same-origin``. A request
    with neither (not a browser's) is refused: it carries a cookie it should not."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == cfg.public_origin
    return request.headers.get("sec-fetch-site") == "same-origin"


def set_session_cookie(response: Response, cfg: ApiConfig, session: websessions.NewSession) -> None:
    """The session cookie (HttpOnly) and, readable by the gateway's own pages, the CSRF
    token they send back in X-CSRF-Token. The CSRF cookie alone is worth nothing: the
    server checks the header against the hash bound to the session."""
    # Both Lax: a page opened from a link on another site must have its CSRF token for
    # its forms; the value alone opens nothing (checked against the session's hash, with
    # the origin). Only the session is HttpOnly: the pages read the CSRF token.
    for name, value, httponly in (
        (cfg.csrf_cookie_name, session.csrf, False),
        (cfg.cookie_name, session.token, True),
    ):
        response.set_cookie(
            name,
            value,
            max_age=int(cfg.lifetimes.absolute.total_seconds()),
            path="/",
            secure=cfg.secure_cookies,
            httponly=httponly,
            samesite="lax",
        )


def clear_session_cookie(response: Response, cfg: ApiConfig) -> None:
    for name in (cfg.cookie_name, cfg.csrf_cookie_name):
        response.delete_cookie(name, path="/", secure=cfg.secure_cookies, samesite="lax")
