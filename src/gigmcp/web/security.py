"""What keeps the dashboard safe in a browser.

Owns the headers of every dashboard answer (a Content-Security-Policy with no inline
script, no inline style and no eval; no framing; no referrer beyond the origin; no
sniffing); resolving the browser session behind a page (only the session cookie: a
script uses the API with a token, and a page never accepts one); and reading a form post:
url-encoded only, bounded, and refused unless it comes from the gateway's own pages
(``Origin``/``Sec-Fetch-Site``) and carries the session's CSRF token in its ``csrf``
field. It must never let a state-changing post through without both checks, and never
put a secret it was sent into an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request

from gigmcp.api import ratelimit
from gigmcp.api.auth import config, same_origin
from gigmcp.api.context import ApiConfig
from gigmcp.control import users, websessions
from gigmcp.control.actor import Actor
from gigmcp.errors import Forbidden, Invalid, RateLimited, Unauthenticated

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 200


class SignInNeeded(Unauthenticated):
    """The page needs a signed-in browser: web/app.py answers it with a redirect to the
    sign-in page (a more specific handler than the error page of its parent)."""


def policy(cfg: ApiConfig | None, form_origins: Sequence[str] = ()) -> str:
    """The Content-Security-Policy of every dashboard answer. Forms may post to the
    gateway and, for the sign-out that continues at the identity provider, to it; a page
    whose form continues at a vendor (connecting an account: the post is answered with a
    redirect to the vendor's authorization endpoint, which form-action governs too) names
    those origins in ``form_origins``."""
    form_action = "'self'"
    if cfg is not None and cfg.oidc is not None:
        issuer = urlsplit(cfg.oidc.client.issuer)
        form_action += f" {issuer.scheme}://{issuer.netloc}"
    for origin in dict.fromkeys(form_origins):
        form_action += f" {origin}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


def headers(cfg: ApiConfig | None, form_origins: Sequence[str] = ()) -> dict[str, str]:
    return {
        "Content-Security-Policy": policy(cfg, form_origins),
        "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in browser behind a page."""

    session: websessions.Current
    me: users.UserInfo
    # The session's CSRF token (from its cookie), for the page's forms.
    csrf: str

    @property
    def actor(self) -> Actor:
        return self.session.actor


def viewer(request: Request, *, activity: bool = True) -> Viewer:
    """The signed-in browser, charged to its user's rate limit (one allowance with the
    API's). ``activity=False`` for a page's own background polls: they do not count as
    the person being there, so an unattended tab still reaches the idle expiry."""
    cfg = config(request)
    cookie = request.cookies.get(cfg.cookie_name)
    current = websessions.resolve(cfg.engine, cookie, cfg.lifetimes, touch=activity)
    # As in the API: the local administrator's sessions are worth nothing once links are off.
    if current is None or (current.local and not cfg.login_links):
        raise SignInNeeded
    buckets: ratelimit.Buckets | None = getattr(request.app.state, "user_buckets", None)
    real = current.actor.real_user_id or current.actor.user_id
    if buckets is not None and not buckets.allow(f"user:{real}"):
        raise RateLimited("too many requests for this user; try again later")
    me = users.me(cfg.engine, current.actor)
    return Viewer(current, me, request.cookies.get(cfg.csrf_cookie_name, ""))


Signed = Annotated[Viewer, Depends(viewer)]


async def posted_form(request: Request, who: Signed) -> dict[str, str]:
    """A form post's fields, after the CSRF checks. Url-encoded only (the dashboard has no
    uploads), so it is parsed here rather than by a multipart library."""
    cfg = config(request)
    if not same_origin(request, cfg):
        raise Forbidden("cross-site form refused")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise Invalid(f"expected a form ({FORM_TYPE})")
    body = await request.body()  # bounded by the guards in front (api/app.py)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            strict_parsing=False,
        )
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form could not be read") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    if not who.session.csrf_ok(fields.get("csrf")):
        raise Forbidden("this form has expired; reload the page and try again")
    return fields


Form = Annotated[dict[str, str], Depends(posted_form)]
