"""Signing in and out of the dashboard, and ending an impersonation.

Owns the sign-in page (a button to the identity provider, or, in the embedded default,
how to get a one-time link), signing out (the session revoked, the cookies cleared, and
on to the identity provider's sign-out when it has one) and the impersonation banner's
stop button. It must never open a session itself (the API's sign-in routes do) and
never send a browser anywhere but to a path of the gateway or to the provider's own
sign-out.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import clear_session_cookie, config
from gigmcp.control import impersonation, websessions
from gigmcp.oidc.flow import safe_return
from gigmcp.web import render
from gigmcp.web.security import Form, Signed, SignInNeeded, viewer

router = APIRouter()


@router.get("/sign-in")
def sign_in(request: Request, return_to: str | None = None) -> Response:
    cfg = config(request)
    back = safe_return(return_to)
    try:
        viewer(request)
        return RedirectResponse(back, status_code=303)  # signed in already
    except SignInNeeded:
        pass
    login_url = "/api/auth/login" + (f"?return_to={quote(back, safe='')}" if back != "/" else "")
    return render.page(
        request, "signin.html", None, {"oidc": cfg.oidc is not None, "login_url": login_url}
    )


@router.post("/sign-out")
def sign_out(request: Request, who: Signed, form: Form) -> Response:
    cfg = config(request)
    websessions.close(cfg.engine, who.session)
    target = "/sign-in"
    if cfg.oidc is not None and not who.session.local:
        target = cfg.oidc.end_session_url(cfg.public_origin + "/") or target
    response = RedirectResponse(target, status_code=303)
    clear_session_cookie(response, cfg)
    return response


@router.post("/impersonation/stop")
def stop_impersonating(request: Request, who: Signed, form: Form) -> Response:
    impersonation.stop(config(request).engine, who.session)
    return RedirectResponse("/", status_code=303)
