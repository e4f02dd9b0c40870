"""Profiles: their servers and tools, changed tools to approve, and their tokens.

Owns the pages under ``/profiles``: the viewer's profiles and creating one; a profile's
page (its servers, assigned and unassigned; each server's tools with a search and a
switch per tool; tools that changed since they were pinned, as a diff of description
and input schema with an approve button; the profile's tokens, with last use and a
revoke button; minting; renaming; deleting, after a confirmation page), and the page
that answers a mint: the token, once, with the configuration each client needs. Every
rule is the service layer's (``control/``): another user's profile is not found there,
exactly as a missing one, on every route here. It must never show a minted token on
any page but the answer to the mint itself (never in a URL, a redirect or a later
page), and never mark a value that came from a user or a server safe.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from gigmcp.api.auth import config
from gigmcp.control import clientconfig, pins, profiles, servers, tokens, tools
from gigmcp.errors import Conflict, Invalid, NotFound
from gigmcp.web import render
from gigmcp.web.messages import translate
from gigmcp.web.render import NavItem
from gigmcp.web.security import Form, Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.profiles", "/profiles")
# A tool's text comes from its server, which may be hostile: a diff shows at most this
# much of each side and of each page, so a server cannot make a page (or difflib, which
# is quadratic in repeated lines) costly. Past DIFF_PAIRS line pairs the two versions
# are shown one after the other instead of diffed.
DIFF_LIMIT = 20_000  # characters a side
DIFF_LINES = 200  # lines a side
DIFF_PAIRS = 10_000  # old lines × new lines that difflib may compare
MAX_CHANGES = 10  # changed tools shown on one page (the rest are counted)
Search = Annotated[str, Query(max_length=200)]


# --- the list ----------------------------------------------------------------------------


@router.get("/profiles")
def list_page(request: Request, who: Signed) -> Response:
    return _list(request, who)


@router.post("/profiles")
def create(request: Request, who: Signed, form: Form) -> Response:
    slug = form.get("slug", "").strip()
    try:
        profiles.create_profile(config(request).engine, who.actor, slug)
    except Invalid:
        return _list(request, who, slug, translate("profiles.slug_invalid"), 422)
    except Conflict:
        return _list(request, who, slug, translate("profiles.slug_taken", slug=slug), 409)
    return _to(slug)


def _list(
    request: Request, who: Viewer, slug: str = "", error: str | None = None, status: int = 200
) -> Response:
    found = profiles.list_profiles(config(request).engine, who.actor)
    return render.page(
        request,
        "profiles.html",
        who,
        {"profiles": found, "slug": slug, "error": error},
        status,
    )


# --- one profile -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """A tool's row in the list; ``id`` is stable and selector-safe whatever the name."""

    id: str
    tool: tools.ToolState


@dataclass(frozen=True, slots=True)
class ServerView:
    server: tools.ServerTools
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """A tool that changed since it was pinned: what the model read, and what it would
    read now."""

    server: str
    tool: str
    may_approve: bool
    description: tuple[tuple[str, str], ...]
    schema: tuple[tuple[str, str], ...]
    truncated: bool


@router.get("/profiles/{slug}")
def profile_page(request: Request, who: Signed, slug: str, q: Search = "") -> Response:
    return _detail(request, who, slug, q)


def _detail(
    request: Request,
    who: Viewer,
    slug: str,
    q: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    engine = config(request).engine
    # First: the profile is the viewer's (or they administer it), else not found.
    assigned = tools.profile_tools(engine, who.actor, slug)
    names = {a.server for a in assigned}
    needle = q.strip().casefold()
    views = [
        ServerView(
            a,
            tuple(Row(_row_id(a.server, t.tool), t) for t in a.tools if _matches(t, needle)),
        )
        for a in assigned
    ]
    changed = [(a, t) for a in assigned for t in a.tools if t.changed]
    changes = [_change(a, t) for a, t in changed[:MAX_CHANGES]]
    more_changes = len(changed) - len(changes)
    now = datetime.now(UTC)
    listed = tokens.list_tokens(engine, who.actor, slug)
    return render.page(
        request,
        "profile.html",
        who,
        {
            "slug": slug,
            "q": q,
            "servers": views,
            "usable": [
                s.name for s in servers.list_servers(engine, who.actor) if s.name not in names
            ],
            "changes": changes,
            "more_changes": more_changes,
            "tokens": [(t, _token_state(t, now)) for t in listed],
            "max_days": tokens.MAX_LIFETIME_DAYS,
            "max_name": tokens.MAX_NAME,
            "url": clientconfig.endpoint(config(request).public_origin, slug),
            # Every form's error and typed values, none by default (the templates'
            # undefined values are errors).
            "errors": {"assign": None, "mint": None, "rename": None, **(errors or {})},
            "values": {"name": "", "expires_in_days": "", "new_slug": slug, **(values or {})},
        },
        status,
    )


@router.post("/profiles/{slug}/rename")
def rename(request: Request, who: Signed, form: Form, slug: str) -> Response:
    new_slug = form.get("new_slug", "").strip()
    try:
        profiles.rename_profile(config(request).engine, who.actor, slug, new_slug)
    except Invalid:
        error, status = translate("profiles.slug_invalid"), 422
    except Conflict:
        error, status = translate("profiles.slug_taken", slug=new_slug), 409
    else:
        return _to(new_slug)
    return _detail(request, who, slug, "", {"rename": error}, {"new_slug": new_slug}, status)


@router.get("/profiles/{slug}/delete")
def delete_page(request: Request, who: Signed, slug: str) -> Response:
    engine = config(request).engine
    detail = profiles.show_profile(engine, who.actor, slug)
    live = [t for t in tokens.list_tokens(engine, who.actor, slug) if not t.revoked]
    return render.page(
        request,
        "profile_delete.html",
        who,
        {"slug": detail.slug, "servers": len(detail.assignments), "tokens": len(live)},
    )


@router.post("/profiles/{slug}/delete")
def delete(request: Request, who: Signed, form: Form, slug: str) -> Response:
    profiles.delete_profile(config(request).engine, who.actor, slug)
    return RedirectResponse("/profiles", status_code=303)


# --- servers and tools -------------------------------------------------------------------


@router.post("/profiles/{slug}/servers")
def assign(request: Request, who: Signed, form: Form, slug: str) -> Response:
    server = form.get("server", "")
    tools_on = form.get("tools_on") == "1"
    if not server:
        error = translate("profiles.choose_server")
        return _detail(request, who, slug, "", {"assign": error}, {}, 422)
    try:
        profiles.assign(config(request).engine, who.actor, slug, server, tools_on)
    except Conflict:
        error = translate("profiles.already_assigned", server=server)
        return _detail(request, who, slug, "", {"assign": error}, {}, 409)
    return _to(slug)


@router.post("/profiles/{slug}/servers/{server}/unassign")
def unassign(request: Request, who: Signed, form: Form, slug: str, server: str) -> Response:
    profiles.unassign(config(request).engine, who.actor, slug, server)
    return _to(slug)


@router.post("/profiles/{slug}/servers/{server}/tools")
def switch_tool(request: Request, who: Signed, form: Form, slug: str, server: str) -> Response:
    """One tool on or off. The answer is the profile's page at the tool's row (htmx takes
    just the row from it): the gateway applies the change from its next request on."""
    tool, enabled = form.get("tool", ""), form.get("enabled")
    if enabled not in ("0", "1"):
        raise Invalid("enabled: 1 or 0")
    tools.set_tool(config(request).engine, who.actor, slug, server, tool, enabled == "1")
    return _to(slug, form.get("q", ""), _row_id(server, tool))


@router.post("/profiles/{slug}/servers/{server}/approve")
def approve(request: Request, who: Signed, form: Form, slug: str, server: str) -> Response:
    """Accept a changed tool's new version, from the profile it was seen in. The right
    to approve is the service layer's (the server's owner, or an administrator)."""
    engine = config(request).engine
    _assigned(engine, who, slug, server)
    pins.approve(engine, who.actor, server, form.get("tool", ""))
    return _to(slug)


# --- tokens ------------------------------------------------------------------------------


@router.post("/profiles/{slug}/tokens")
def mint(request: Request, who: Signed, form: Form, slug: str) -> Response:
    """Answers with the token's page itself: never a redirect, so the token is never in
    a URL nor on a page that can be fetched again."""
    cfg = config(request)
    name = form.get("name", "").strip()
    days_text = form.get("expires_in_days", "").strip()
    values = {"name": name, "expires_in_days": days_text}
    days: int | None = None
    if days_text:
        try:
            days = int(days_text)
        except ValueError:
            days = 0
        if not 1 <= days <= tokens.MAX_LIFETIME_DAYS:
            error = translate("profiles.days_invalid", max=tokens.MAX_LIFETIME_DAYS)
            return _detail(request, who, slug, "", {"mint": error}, values, 422)
    try:
        token = tokens.mint_token(
            cfg.engine, who.actor, slug, name or None, timedelta(days=days) if days else None
        )
    except Invalid:
        error = translate("profiles.name_invalid", max=tokens.MAX_NAME)
        return _detail(request, who, slug, "", {"mint": error}, values, 422)
    url = clientconfig.endpoint(cfg.public_origin, slug)
    configs = clientconfig.for_clients(slug, url, token)
    return render.page(
        request,
        "token_minted.html",
        who,
        {
            "slug": slug,
            "name": name,
            "token": token,
            "url": url,
            "configs": [(key, clientconfig.pasteable(configs[key])) for key in configs],
        },
    )


@router.post("/profiles/{slug}/tokens/{token_id}/revoke")
def revoke(request: Request, who: Signed, form: Form, slug: str, token_id: int) -> Response:
    engine = config(request).engine
    # Revoked from the profile it is listed under: the profile first (not found for
    # another user's), then the token among that profile's.
    profiles.show_profile(engine, who.actor, slug)
    if all(t.id != token_id for t in tokens.list_tokens(engine, who.actor, slug)):
        raise NotFound(f"no token with id {token_id} in profile {slug!r}")
    tokens.revoke_token(engine, who.actor, token_id)
    return _to(slug)


# --- helpers -----------------------------------------------------------------------------


def _to(slug: str, q: str = "", anchor: str = "") -> Response:
    target = f"/profiles/{quote(slug, safe='')}"
    if q:
        target += f"?q={quote(q, safe='')}"
    if anchor:
        target += f"#{anchor}"
    return RedirectResponse(target, status_code=303)


def _assigned(engine: Engine, who: Viewer, slug: str, server: str) -> None:
    detail = profiles.show_profile(engine, who.actor, slug)
    if all(a.server != server for a in detail.assignments):
        raise NotFound(f"server {server!r} is not assigned to profile {slug!r}")


def _row_id(server: str, tool: str) -> str:
    return "tool-" + hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:16]


def _matches(tool: tools.ToolState, needle: str) -> bool:
    if not needle:
        return True
    return needle in tool.tool.casefold() or needle in (tool.description or "").casefold()


def _token_state(t: tokens.TokenInfo, now: datetime) -> str:
    if t.revoked:
        return "revoked"
    expires = t.expires_at
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # SQLite
        if expires <= now:
            return "expired"
    return "active"


def _change(a: tools.ServerTools, t: tools.ToolState) -> Change:
    old, new = t.pinned or {}, t.flagged or {}
    old_desc, cut1 = _bounded(_text(old.get("description")))
    new_desc, cut2 = _bounded(_text(new.get("description")))
    old_schema, cut3 = _bounded(_json(old.get("inputSchema")))
    new_schema, cut4 = _bounded(_json(new.get("inputSchema")))
    return Change(
        a.server,
        t.tool,
        a.may_approve,
        _diff(old_desc, new_desc),
        _diff(old_schema, new_schema),
        cut1 or cut2 or cut3 or cut4,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else _json(value)


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, indent=2, sort_keys=True)


def _bounded(text: str) -> tuple[str, bool]:
    cut = len(text) > DIFF_LIMIT
    text = text[:DIFF_LIMIT]
    lines = text.splitlines()
    if len(lines) > DIFF_LINES:
        return "\n".join(lines[:DIFF_LINES]), True
    return text, cut


def _diff(old: str, new: str) -> tuple[tuple[str, str], ...]:
    """Line by line: ("same" | "del" | "add", line); empty when nothing changed."""
    if old == new:
        return ()
    a, b = old.splitlines(), new.splitlines()
    if len(a) * len(b) > DIFF_PAIRS:
        return (*(("del", line) for line in a), *(("add", line) for line in b))
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(("same", line) for line in a[i1:i2])
        else:
            out.extend(("del", line) for line in a[i1:i2])
            out.extend(("add", line) for line in b[j1:j2])
    return tuple(out)
