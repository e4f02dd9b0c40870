"""Turning a page's data into HTML.

Owns the Jinja2 environment (templates from the package, autoescaped, a missing value an
error rather than an empty string), what every page is given (the viewer, the
navigation, the CSRF token for its forms, the message catalogue as ``t``, the static
files' hashed names and integrity values) and the response (status, security headers,
never cached). It must never mark a value safe that came from a user or a server (only
the templates' own markup is markup).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from gigmcp.api.auth import config
from gigmcp.web import messages, security
from gigmcp.web.assets import assets
from gigmcp.web.security import Viewer


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str  # message key of its label
    path: str
    admin: bool = False


def when(at: datetime | None) -> str:
    if at is None:
        return "—"
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gigmcp.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["t"] = messages.translate
    env.globals["asset"] = lambda name: assets().url(name)
    env.globals["integrity"] = lambda name: assets().integrity(name)
    env.filters["when"] = when
    return env


def page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    form_origins: Sequence[str] = (),
) -> HTMLResponse:
    cfg = config(request)
    items: list[NavItem] = getattr(request.app.state, "nav", [])
    nav = [n for n in items if viewer is not None and (not n.admin or viewer.actor.admin)]
    html = (
        environment()
        .get_template(template)
        .render(
            viewer=viewer,
            nav=nav,
            here=request.url.path,
            csrf=viewer.csrf if viewer else "",
            link_sign_in=cfg.login_links,
            **(context or {}),
        )
    )
    response = HTMLResponse(html, status_code=status)
    response.headers.update(security.headers(cfg, form_origins))
    response.headers["Cache-Control"] = "no-store"
    return response
