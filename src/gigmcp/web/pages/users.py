"""The users page (administrators): who has signed in, with what role, and viewing the
gateway as one of them.

Owns listing the users (name, email, the role the identity provider's claims gave at the
last sign-in, the provider, when they last signed in) and the "view as" form, which
starts an impersonation of at most an hour on the administrator's own session and goes
to the overview. Whether the feature is on is the gateway's setting (checked here, as
the API does); who may list users or start one, for how long, and never as oneself or
twice, the service layer decides. It must never show the list to a user who is not an
administrator, start an impersonation from a post without the CSRF checks, or let one
start while another lasts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gigmcp.api.auth import config
from gigmcp.control import impersonation, users
from gigmcp.errors import Invalid, NotFound
from gigmcp.web import render
from gigmcp.web.messages import translate
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed

router = APIRouter()
NAV_ITEM = NavItem("nav.users", "/users", admin=True)
DEFAULT_MINUTES = 30


@router.get("/users")
def users_page(request: Request, who: Signed) -> Response:
    cfg = config(request)
    # Refused (403, as the API) for anyone whose real role is not admin.
    people = users.list_users(cfg.engine, who.actor)
    real = who.actor.real_user_id or who.actor.user_id
    return render.page(
        request,
        "users.html",
        who,
        {
            "people": people,
            "real": real,
            "enabled": cfg.impersonation,
            "minutes": DEFAULT_MINUTES,
            "max_minutes": impersonation.MAX_MINUTES,
        },
    )


@router.post("/users/view-as")
def view_as(request: Request, who: Signed, form: Form) -> Response:
    cfg = config(request)
    if not cfg.impersonation:
        raise NotFound(translate("users.off"))
    target = _number(form.get("user_id", ""), "users.bad_user")
    minutes = _number(form.get("minutes", "") or str(DEFAULT_MINUTES), "users.bad_minutes")
    # The service layer refuses a non-administrator, oneself, over an hour, and a second
    # impersonation while one lasts (an impersonating session is read-only).
    impersonation.start(cfg.engine, who.session, target, minutes)
    return RedirectResponse("/", status_code=303)


def _number(text: str, key: str) -> int:
    text = text.strip()
    # isdigit() alone takes other scripts' digits; a bound keeps drivers from overflowing.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise Invalid(translate(key))
    return int(text)
