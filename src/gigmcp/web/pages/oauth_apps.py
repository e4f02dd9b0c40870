"""OAuth apps (administrators): the gateway's registration at each vendor's authorization
server, which the users' connected accounts go through.

Owns the page ``/oauth-apps`` (every app: vendor, name, issuer, endpoints, client id,
client authentication, whether a client secret is set, PKCE, resource, default and
wanted scopes, extra parameters, how many users connected) and its three posts: add,
edit (an empty client secret keeps the stored one) and delete (which disconnects every
user's account at that vendor). Turning the form's text into an app is the page's:
scopes are split on white space, extra parameters are one ``name=value`` a line. Every
rule about what an app may be, and who may see or change one, is the service layer's
(``control/oauth.py``, and ``control/users.py`` for who may see this page), so a
refusal here is its refusal. It must never send a client secret back to the browser:
not in the page, not masked, not in a form shown again after a refusal (the other
fields keep what was typed; the secret's comes back empty), not in a redirect; and it
never logs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.api.problems import status_of
from gigmcp.control import oauth, users
from gigmcp.core.definitions import SCOPE
from gigmcp.errors import ConfigurationError, GigError, Invalid
from gigmcp.oauthclient.client import AUTH_METHODS
from gigmcp.oauthclient.outbound import Outbound
from gigmcp.web import render
from gigmcp.web.messages import translate
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.oauth_apps", "/oauth-apps", admin=True)
# What the page says after a post, by the ``done`` its redirect carries (anything else
# says nothing: the page never shows text a URL brought).
DONE = {
    "added": "oauth_apps.done_added",
    "saved": "oauth_apps.done_saved",
    "deleted": "oauth_apps.done_deleted",
}
# The form's fields other than the secret: what a refused form keeps.
TEXT_FIELDS = (
    "vendor", "display_name", "issuer", "authorization_endpoint", "token_endpoint",
    "revocation_endpoint", "client_id", "auth_method", "resource", "default_scopes",
    "extra_params", "api_hosts",
)  # fmt: skip
NEW_APP: dict[str, Any] = {
    **dict.fromkeys(TEXT_FIELDS, ""),
    "auth_method": AUTH_METHODS[0],
    "pkce": True,
}


@router.get("/oauth-apps")
def oauth_apps_page(request: Request, who: Signed, done: str | None = None) -> Response:
    return _page(request, who, notice=DONE.get(done or ""))


@router.post("/oauth-apps")
def add_app(request: Request, who: Signed, form: Form) -> Response:
    return _save(request, who, form, None)


@router.post("/oauth-apps/{vendor}")
def edit_app(request: Request, who: Signed, form: Form, vendor: str) -> Response:
    return _save(request, who, form, vendor)


@router.post("/oauth-apps/{vendor}/delete")
def delete_app(request: Request, who: Signed, form: Form, vendor: str) -> Response:
    cfg = config(request)
    try:
        if cfg.keyring is None:
            raise ConfigurationError("the vault is not open on this gateway")
        oauth.delete_app(cfg.engine, cfg.keyring, cfg.outbound or Outbound(), who.actor, vendor)
    except GigError as exc:
        return _refused(request, who, exc, None, None)
    return RedirectResponse("/oauth-apps?done=deleted", status_code=303)


def _save(request: Request, who: Viewer, form: Mapping[str, str], vendor: str | None) -> Response:
    """Add (``vendor`` None: the form names it) or edit the app of ``vendor``."""
    cfg = config(request)
    draft = _draft(form, vendor)
    try:
        spec = _spec(form, vendor)
        if cfg.keyring is None:
            raise ConfigurationError("the vault is not open on this gateway")
        oauth.save_app(
            cfg.engine, cfg.keyring, cfg.outbound or Outbound(), who.actor, spec,
            create=vendor is None,
        )  # fmt: skip
    except GigError as exc:
        # The reason names what is wrong, never the secret; the form comes back with what
        # was typed, its secret field empty.
        return _refused(request, who, exc, draft, vendor or "")
    return RedirectResponse(
        f"/oauth-apps?done={'added' if vendor is None else 'saved'}", status_code=303
    )


def _draft(form: Mapping[str, str], vendor: str | None) -> dict[str, Any]:
    """What was typed, but the secret."""
    draft: dict[str, Any] = {name: form.get(name, "") for name in TEXT_FIELDS}
    draft["pkce"] = "pkce" in form
    if vendor is not None:
        draft["vendor"] = vendor
    return draft


def _spec(form: Mapping[str, str], vendor: str | None) -> oauth.AppSpec:
    secret = form.get("client_secret", "")
    return oauth.AppSpec(
        vendor=vendor if vendor is not None else form.get("vendor", "").strip(),
        client_id=form.get("client_id", "").strip(),
        display_name=_optional(form, "display_name"),
        issuer=_optional(form, "issuer"),
        authorization_endpoint=_optional(form, "authorization_endpoint"),
        token_endpoint=_optional(form, "token_endpoint"),
        revocation_endpoint=_optional(form, "revocation_endpoint"),
        # Empty: none on a new app, the stored one kept on an edit.
        client_secret=secret.encode() if secret else None,
        auth_method=form.get("auth_method", "").strip(),
        pkce="pkce" in form,
        resource=_optional(form, "resource"),
        default_scopes=_scopes(form.get("default_scopes", "")),
        extra_params=_extra_params(form.get("extra_params", "")),
        api_hosts=tuple(form.get("api_hosts", "").split()),
    )


def _optional(form: Mapping[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


def _scopes(text: str) -> tuple[str, ...]:
    """Scopes separated by white space, each an OAuth scope token (RFC 6749 3.3)."""
    found = tuple(text.split())
    for scope in found:
        if not SCOPE.match(scope):
            raise Invalid(translate("oauth_apps.bad_scope", scope=scope[:64]))
    return found


def _extra_params(text: str) -> dict[str, str]:
    """One ``name=value`` a line (the value may hold ``=``); blank lines are skipped."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not name:
            raise Invalid(translate("oauth_apps.bad_extra_line", line=number))
        if name in found:
            raise Invalid(translate("oauth_apps.extra_twice", line=number, name=name[:64]))
        found[name] = value.strip()
    return found


def _form_values(info: oauth.AppInfo) -> dict[str, Any]:
    """A stored app as its edit form shows it."""
    return {
        "vendor": info.vendor,
        "display_name": info.display_name,
        "issuer": info.issuer or "",
        "authorization_endpoint": info.authorization_endpoint,
        "token_endpoint": info.token_endpoint,
        "revocation_endpoint": info.revocation_endpoint or "",
        "client_id": info.client_id,
        "auth_method": info.auth_method,
        "pkce": info.pkce,
        "resource": info.resource or "",
        "default_scopes": " ".join(info.default_scopes),
        "extra_params": "\n".join(f"{k}={v}" for k, v in info.extra_params.items()),
        "api_hosts": " ".join(info.api_hosts),
    }


def _refused(
    request: Request,
    who: Viewer,
    exc: GigError,
    draft: dict[str, Any] | None,
    editing: str | None,
) -> Response:
    found = status_of(exc)
    if found is None:
        raise exc
    return _page(request, who, error=str(exc), status=found[0], draft=draft, editing=editing)


def _page(
    request: Request,
    who: Viewer,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    draft: dict[str, Any] | None = None,
    editing: str | None = None,
) -> Response:
    """``editing``: the form a refusal came from ("" the add form, else the vendor's)."""
    cfg = config(request)
    # Refused (403, as for the users page) for anyone whose real role is not admin.
    users.require_admin(cfg.engine, who.actor)
    apps = [
        (a, draft if draft is not None and editing == a.vendor else _form_values(a))
        for a in oauth.list_apps(cfg.engine, who.actor)
    ]
    return render.page(
        request,
        "oauth_apps.html",
        who,
        {
            "apps": apps,
            "new": draft if draft is not None and editing == "" else NEW_APP,
            "methods": AUTH_METHODS,
            "notice": notice,
            "error": error,
            "editing": editing,
            "vault_open": cfg.keyring is not None,
        },
        status,
    )
