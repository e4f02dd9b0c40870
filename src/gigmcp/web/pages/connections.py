"""Connected accounts: the viewer's connection to each vendor an administrator set up,
with Connect, Reconnect and Disconnect; and the callback the vendor sends the browser
back to.

Owns the page ``/connections``, its posts (connect: answered with a redirect to the
vendor's authorization endpoint, whose origin the page's CSP lets forms reach;
disconnect) and ``/connections/<vendor>/callback``; and the public client metadata
document of an app that identifies the gateway by one. Every rule is the service layer's
(``control/oauth.py``): the callback completes only an authorization this very browser
session started for this vendor, once. It must never show a token, a code or a state,
and never show text a URL brought (a vendor's error is cut to its code by the service
layer).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.api.context import ApiConfig
from gigmcp.api.problems import status_of
from gigmcp.control import oauth, remote
from gigmcp.errors import ConfigurationError, ControlError, GigError
from gigmcp.netpolicy.hosts import HostError, canonical_host
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.vault.keys import Keyring
from gigmcp.web import render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.connections", "/connections")
DONE = {
    "connected": "connections.done_connected",
    "disconnected": "connections.done_disconnected",
    "not-revoked": "connections.done_not_revoked",
}


@router.get(remote.CIMD_PREFIX + "{vendor}.json")
def client_metadata(request: Request, vendor: str) -> Response:
    """The Client ID Metadata Document of an app that identifies the gateway by one: an
    authorization server that takes them reads who the client is (and where it may send
    codes) from this URL, which is the client id. Public, as it must be; only for apps
    whose client id is this very URL (any other vendor: 404)."""
    cfg = config(request)
    client_id = remote.cimd_url(cfg.public_origin, vendor)
    if not any(a.vendor == vendor and a.client_id == client_id
               for a in oauth.list_apps(cfg.engine, None)):  # fmt: skip
        return JSONResponse({"error": "no such client"}, status_code=404)
    doc = {
        "client_id": client_id,
        "client_name": remote.CLIENT_NAME,
        "client_uri": cfg.public_origin,
        "redirect_uris": [oauth.callback_url(cfg.public_origin, vendor)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    return JSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})


@router.get("/connections")
def connections_page(request: Request, who: Signed, done: str | None = None) -> Response:
    return _page(request, who, notice=DONE.get(done or ""))


@router.post("/connections/{vendor}/connect")
def connect(request: Request, who: Signed, form: Form, vendor: str) -> Response:
    cfg = config(request)
    try:
        url = oauth.begin_connect(
            cfg.engine, _keyring(cfg), who.actor, vendor,
            oauth.binding(who.session.id), cfg.public_origin,
        )  # fmt: skip
    except ControlError as exc:
        return _page(request, who, error=str(exc), status=_status(exc))
    response = RedirectResponse(url, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/connections/{vendor}/callback")
def callback(
    request: Request,
    who: Signed,
    vendor: str,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    cfg = config(request)
    try:
        oauth.finish_connect(
            cfg.engine, _keyring(cfg), cfg.outbound or Outbound(), who.actor, vendor,
            oauth.Callback(state=state, code=code, error=error, iss=iss),
            oauth.binding(who.session.id), cfg.public_origin,
        )  # fmt: skip
    except GigError as exc:
        return _page(request, who, error=str(exc), status=_status(exc))
    response = RedirectResponse("/connections?done=connected", status_code=303)
    # The URL held a code: it goes nowhere else.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/connections/{vendor}/disconnect")
def disconnect(request: Request, who: Signed, form: Form, vendor: str) -> Response:
    cfg = config(request)
    try:
        done = oauth.disconnect(
            cfg.engine, _keyring(cfg), cfg.outbound or Outbound(), who.actor, vendor
        )
    except ControlError as exc:
        return _page(request, who, error=str(exc), status=_status(exc))
    what = "disconnected" if done.revoked else "not-revoked"
    return RedirectResponse(f"/connections?done={what}", status_code=303)


def _origin(url: str) -> str | None:
    """A CSP source for ``url``'s origin: scheme, host and port, never a user name; None
    for anything whose host is not a host (the service layer refuses those; a source
    must never carry a ``;`` or a ``*`` into the policy)."""
    try:
        u = urlsplit(url)
        host = canonical_host(u.hostname or "")
        port = u.port
    except (ValueError, HostError):
        return None
    if u.scheme not in ("https", "http"):
        return None
    name = f"[{host.name}]" if ":" in host.name else host.name
    return f"{u.scheme}://{name}" + (f":{port}" if port else "")


def _keyring(cfg: ApiConfig) -> Keyring:
    if cfg.keyring is None:
        raise ConfigurationError("the vault is not open on this gateway")
    return cfg.keyring


def _status(exc: GigError) -> int:
    found = status_of(exc)
    status = found[0] if found is not None else 500
    # A callback that fails its checks is a bad request of this browser's, not a
    # missing sign-in (the viewer is signed in).
    return 400 if status == 401 else status


def _page(
    request: Request,
    who: Viewer,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    cfg = config(request)
    found = oauth.list_connections(cfg.engine, who.actor)
    apps = oauth.list_apps(cfg.engine, who.actor)
    origins = [o for a in apps if (o := _origin(a.authorization_endpoint)) is not None]
    return render.page(
        request,
        "connections.html",
        who,
        {"connections": found, "notice": notice, "error": error},
        status,
        form_origins=origins,
    )
