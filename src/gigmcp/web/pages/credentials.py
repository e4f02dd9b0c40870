"""Credentials: what each server the viewer uses needs, whether the viewer has set it, and
write-only forms to set and unset their own values.

Owns the page ``/credentials`` (each server the viewer may use that declares
credentials, each credential, how it reaches the server and whether it is set) and its
two form posts: set (a password field, posted once, sealed by the vault through the
service layer) and unset. Every rule is the service layer's (``control/
credentials.py``): another user's private server is not found there, exactly as a
missing one. It must never send a value back to the browser, not even masked: not in
the page after a set, not in a refusal (the form is shown again empty, with the service
layer's reason, which never quotes a value), not in a redirect or a URL; and it never
logs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.control import credentials
from gigmcp.errors import Invalid
from gigmcp.web import render
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.credentials", "/credentials")
# What the page says after a post, by the ``done`` its redirect carries (anything else
# says nothing: the page never shows text a URL brought).
DONE = {"set": "credentials.done_set", "unset": "credentials.done_unset"}


@router.get("/credentials")
def credentials_page(request: Request, who: Signed, done: str | None = None) -> Response:
    return _page(request, who, notice=DONE.get(done or ""))


@router.post("/credentials/{server}/{credential_id}")
def set_value(
    request: Request, who: Signed, form: Form, server: str, credential_id: str
) -> Response:
    cfg = config(request)
    if cfg.keyring is None:
        return _page(request, who, status=503)  # the page says the vault is not open
    try:
        credentials.set_credential(
            cfg.engine,
            cfg.keyring,
            who.actor,
            server,
            credential_id,
            form.get("value", "").encode(),
        )
    except Invalid as exc:
        # The service layer's reason names what is wrong, never the value; the form
        # comes back empty.
        return _page(request, who, errors={(server, credential_id): str(exc)}, status=422)
    return RedirectResponse("/credentials?done=set", status_code=303)


@router.post("/credentials/{server}/{credential_id}/unset")
def unset_value(
    request: Request, who: Signed, form: Form, server: str, credential_id: str
) -> Response:
    credentials.unset_credential(config(request).engine, who.actor, server, credential_id)
    return RedirectResponse("/credentials?done=unset", status_code=303)


def _page(
    request: Request,
    who: Viewer,
    notice: str | None = None,
    errors: Mapping[tuple[str, str], str] | None = None,
    status: int = 200,
) -> Response:
    cfg = config(request)
    found = credentials.list_credentials(cfg.engine, who.actor)
    by_server = [(name, list(items)) for name, items in groupby(found, key=lambda c: c.server)]
    return render.page(
        request,
        "credentials.html",
        who,
        {
            "by_server": by_server,
            "errors": dict(errors or {}),
            "notice": notice,
            "vault_open": cfg.keyring is not None,
        },
        status,
    )
