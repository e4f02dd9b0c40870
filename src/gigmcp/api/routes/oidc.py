"""Signing in with the identity provider: ``/api/auth/login`` sends the browser there,
``/api/auth/callback`` takes it back.

Owns turning the provider's answer into a user and a browser session: the sign-in's
sealed state cookie is opened and cleared (so it serves once), the callback's ``state``
and ``iss`` checked, the code exchanged and the ID token verified (``oidc/``), the user
made or updated with the role the policy gives now (``control/users.py``), and a new
session opened. It must never sign anyone in on a callback that fails any check, land
the browser anywhere but a path of this gateway, or show the provider's error text
beyond its code.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from gigmcp.api.auth import config, set_session_cookie
from gigmcp.api.context import ApiConfig
from gigmcp.control import users, websessions
from gigmcp.errors import NotFound, Unauthenticated
from gigmcp.oidc import flow as flows
from gigmcp.oidc.provider import Provider, roles_from

router = APIRouter()
FLOW_COOKIE = "gig_oidc_flow"
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


def _provider(cfg: ApiConfig) -> Provider:
    if cfg.oidc is None:
        raise NotFound("no identity provider is configured (GIG_OIDC_ISSUER)")
    return cfg.oidc


@router.get("/api/auth/login")
def login(request: Request, return_to: str | None = None) -> Response:
    cfg = config(request)
    provider = _provider(cfg)
    flow = flows.begin(return_to)
    response = RedirectResponse(provider.authorize_url(flow), status_code=303)
    # Lax: the provider sends the browser back with a top-level GET, which carries it.
    response.set_cookie(
        FLOW_COOKIE,
        flows.seal(flow, cfg.flow_key),
        max_age=flows.LIFETIME_S,
        path="/api/auth",
        secure=cfg.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/api/auth/callback")
def callback(request: Request) -> Response:
    cfg = config(request)
    provider = _provider(cfg)
    q = request.query_params
    flow = flows.open_(request.cookies.get(FLOW_COOKIE), cfg.flow_key)
    flows.check_state(flow, q.get("state"))
    error = q.get("error")
    if error is not None:
        code = error if _ERROR_CODE.fullmatch(error) else "error"
        raise Unauthenticated(f"the identity provider did not sign you in ({code})")
    iss = q.get("iss")  # RFC 9207: a mix-up defence where the provider sends it
    if iss is not None and iss != provider.client.issuer:
        raise Unauthenticated("the callback names another issuer")
    given = q.get("code")
    if not given or len(given) > 2048:
        raise Unauthenticated("the callback carries no code")
    claims = provider.exchange(given, flow)
    who = users.Identity(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        email_verified=claims.get("email_verified") is True,
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        roles=roles_from(claims, cfg.roles_claim),
    )
    actor = users.sign_in(cfg.engine, who, cfg.roles)
    session = websessions.open_session(
        cfg.engine, actor, cfg.lifetimes, request.headers.get("user-agent")
    )
    response = RedirectResponse(flow.return_to, status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/api/auth", secure=cfg.secure_cookies)
    set_session_cookie(response, cfg, session)
    return response
