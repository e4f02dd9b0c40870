"""Signing in and out, the caller, their browser sessions and their API tokens.

Owns ``/api/auth/*`` (the one-time link of the embedded default, sign-out) and
``/api/v1/me``, ``/api/v1/sessions``, ``/api/v1/api-tokens``. It must never return a
session or API token except the one just made, once."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from gigmcp.api.auth import Principal, clear_session_cookie, config, principal, set_session_cookie
from gigmcp.control import apitokens, loginlinks, users, websessions
from gigmcp.errors import Forbidden, NotFound, Unauthenticated

router = APIRouter()
Caller = Annotated[Principal, Depends(principal)]


class Me(BaseModel):
    id: int
    issuer: str
    subject: str
    email: str | None
    name: str | None
    role: str
    impersonating: bool
    real_user_id: int | None
    read_only: bool


@router.get("/api/v1/me")
def me(caller: Caller, request: Request) -> Me:
    info = users.me(config(request).engine, caller.actor)
    a = caller.actor
    return Me(
        id=info.id,
        issuer=info.issuer,
        subject=info.subject,
        email=info.email,
        name=info.name,
        role=info.role,
        impersonating=a.impersonating,
        real_user_id=a.real_user_id,
        read_only=a.read_only,
    )


@router.get("/api/auth/link")
def redeem_link(request: Request, token: str = "") -> Response:
    """The one-time link of the embedded default: a session for the local
    administrator, then the dashboard. Refused when the link feature is off."""
    cfg = config(request)
    if not cfg.login_links:
        raise NotFound(
            "sign-in links are off (an identity provider is configured, or the "
            "gateway listens beyond loopback)"
        )
    if not from_this_host(request):
        raise NotFound("sign-in links work only from this host, without a proxy")
    who = loginlinks.redeem(cfg.engine, token)
    if who is None:
        raise Unauthenticated(
            "this sign-in link is unknown, used or expired; run 'gigmcp login-link' for a new one"
        )
    session = websessions.open_session(
        cfg.engine, who, cfg.lifetimes, request.headers.get("user-agent")
    )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, cfg, session)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def from_this_host(request: Request) -> bool:
    """The browser is on the gateway's host: a loopback peer, and no proxy header (a
    proxy on this host would otherwise carry a link in from anywhere)."""
    peer = request.client.host if request.client else ""
    if any(h in request.headers for h in ("forwarded", "x-forwarded-for", "x-real-ip")):
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


class SignedOut(BaseModel):
    # Where to send the browser so the identity provider signs it out too (RP-initiated
    # logout), when the provider offers it; None otherwise.
    provider_logout_url: str | None


@router.post("/api/auth/logout")
def logout(caller: Caller, request: Request, response: Response) -> SignedOut:
    cfg = config(request)
    if caller.session is not None:
        websessions.close(cfg.engine, caller.session)
    clear_session_cookie(response, cfg)
    url = None
    if cfg.oidc is not None and caller.session is not None and not caller.session.local:
        url = cfg.oidc.end_session_url(cfg.public_origin + "/")
    return SignedOut(provider_logout_url=url)


class SessionOut(BaseModel):
    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client: str | None
    current: bool


@router.get("/api/v1/sessions")
def list_sessions(caller: Caller, request: Request) -> list[SessionOut]:
    current = caller.session.id if caller.session else None
    return [
        SessionOut.model_validate(s, from_attributes=True)
        for s in websessions.list_sessions(config(request).engine, caller.actor, current)
    ]


@router.delete("/api/v1/sessions/{session_id}", status_code=204)
def revoke_session(session_id: int, caller: Caller, request: Request) -> None:
    websessions.revoke(config(request).engine, caller.actor, session_id)


class ApiTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    scope: Literal["read", "write"]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiTokenMinted(BaseModel):
    id: int
    token: str = Field(description="Shown once: store it now.")


@router.get("/api/v1/api-tokens")
def list_api_tokens(caller: Caller, request: Request) -> list[apitokens.ApiTokenInfo]:
    return apitokens.list_tokens(config(request).engine, caller.actor)


@router.post("/api/v1/api-tokens", status_code=201)
def mint_api_token(
    body: ApiTokenIn, caller: Caller, request: Request, response: Response
) -> ApiTokenMinted:
    if caller.kind != "session":
        # A stolen token must not be able to make itself a permanent successor.
        raise Forbidden("API tokens are made from a signed-in browser, not with a token")
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    tid, token = apitokens.mint(config(request).engine, caller.actor, body.name, body.scope, ttl)
    response.headers["Cache-Control"] = "no-store"
    return ApiTokenMinted(id=tid, token=token)


@router.delete("/api/v1/api-tokens/{token_id}", status_code=204)
def revoke_api_token(token_id: int, caller: Caller, request: Request) -> None:
    apitokens.revoke(config(request).engine, caller.actor, token_id)
