"""The audit page and its exports: what happened, filtered, a page at a time.

Owns reading the audit filters a GET form sends (kind, profile, server, tool, outcome,
a range of UTC dates and, for an administrator, a user), the table of one keyset page
with an "older" link that carries the opaque cursor and the same filters, and the CSV
and JSON Lines exports of every row the filters match, streamed a keyset page at a time
up to :data:`gigmcp.control.auditexport.EXPORT_CAP` rows. Every row comes from the
service layer, which gives a user their own rows only. It must never show or export a
row the service layer did not give this viewer, answer a bad filter or cursor with a
500, hold more than one page of an export in memory, or write a CSV cell a spreadsheet
would run as a formula.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from gigmcp.api.auth import config
from gigmcp.control import audit, auditexport, users
from gigmcp.errors import Invalid, NotFound
from gigmcp.web import render, security
from gigmcp.web.messages import translate
from gigmcp.web.render import NavItem
from gigmcp.web.security import Signed, Viewer

router = APIRouter()
NAV_ITEM = NavItem("nav.audit", "/audit")
PAGE = 50
# The form's text fields: (query name, service-layer filter, longest value the column
# holds). A longer value could never match, so it is refused rather than searched for.
TEXT = (
    ("kind", "action", 64),
    ("profile", "profile", 63),
    ("server", "server", 63),
    ("tool", "tool", 255),
    ("outcome", "outcome", 32),
)
FIELDS = (*(name for name, _, _ in TEXT), "from", "to", "user")
# The columns of both exports, in order (the JSON keys are the same names).
COLUMNS = (
    "id",
    "at",
    "kind",
    "user_id",
    "user",
    "profile_id",
    "profile",
    "server",
    "tool",
    "outcome",
    "duration_ms",
    "arg_bytes",
    "detail",
)
# A cell starting with one of these is a formula to a spreadsheet (also in full width,
# which some read the same way); such a cell gets a leading apostrophe (OWASP's advice).
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@dataclass(frozen=True, slots=True)
class Asked:
    """A request's filters: as typed (to refill the form and build links) and as the
    service layer takes them, and the cursor."""

    values: dict[str, str]
    filters: auditexport.Filters
    after: audit.Cursor | None


@dataclass(frozen=True, slots=True)
class Row:
    """One audit row as the table shows it: text only (the template escapes it)."""

    at: str
    at_iso: str
    kind: str
    user: str
    profile: str
    server: str
    tool: str
    outcome: str
    duration: str
    detail: str


def values(params: Mapping[str, str], who: Viewer) -> dict[str, str]:
    """The filter fields sent, trimmed; the user filter only for an administrator (a user
    sees their own rows whatever they send)."""
    out = {name: params.get(name, "").strip() for name in FIELDS}
    if not who.actor.admin:
        out["user"] = ""
    return out


def asked(sent: dict[str, str], after: str | None) -> Asked:
    """The filters, checked: a bad one is :class:`Invalid`, said in the catalogue's words
    (and never echoing the value: it stays in its field)."""
    text: dict[str, str | None] = {}
    for name, key, longest in TEXT:
        value = sent[name]
        if len(value) > longest or any(ord(c) < 32 or ord(c) == 127 for c in value):
            # Control characters would match nothing, and PostgreSQL refuses a NUL.
            raise Invalid(translate("audit.bad_text", field=translate(f"audit.{name}")))
        text[key] = value or None
    since = _day(sent["from"], "from")
    last = _day(sent["to"], "to")
    until = None
    if last is not None:
        try:
            until = last + timedelta(days=1)  # the "to" day is included
        except OverflowError:
            raise Invalid(translate("audit.bad_date", field=translate("audit.to"))) from None
    if since is not None and until is not None and since >= until:
        raise Invalid(translate("audit.bad_range"))
    user_id = None
    if sent["user"]:
        # isascii: str.isdigit accepts '²', which int() does not.
        user = sent["user"]
        if not (user.isascii() and user.isdigit()) or not 0 < int(user) < 2**63:
            raise Invalid(translate("audit.bad_user"))
        user_id = int(user)
    try:
        cursor = auditexport.cursor(after)
    except Invalid:
        raise Invalid(translate("audit.bad_cursor")) from None
    filters = auditexport.Filters(user_id=user_id, since=since, until=until, **text)
    return Asked(sent, filters, cursor)


def _day(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time(), UTC)
    except ValueError:
        raise Invalid(translate("audit.bad_date", field=translate(f"audit.{name}"))) from None


def query(sent: Mapping[str, str], **extra: str) -> str:
    """A query string of the filters that are set (and ``extra``), for a link."""
    return urlencode({**{k: v for k, v in sent.items() if v}, **extra})


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive times; every time the store writes is UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    return translate("audit.ms", ms=f"{ms:.1f}" if ms < 10 else f"{ms:.0f}")


def row(e: audit.AuditEntry, names: auditexport.Names) -> Row:
    at = _utc(e.at)
    return Row(
        at=at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        at_iso=at.isoformat(),
        kind=e.action,
        user=_user(e.user_id, names),
        profile=_profile(e.profile_id, names),
        server=e.server or "",
        tool=e.tool or "",
        outcome=e.outcome,
        duration=_duration(e.duration_ms),
        detail=e.detail or "",
    )


def _user(uid: int | None, names: auditexport.Names) -> str:
    if uid is None:
        return ""
    return names.users.get(uid) or translate("audit.user_id", id=uid)


def _profile(pid: int | None, names: auditexport.Names) -> str:
    if pid is None:
        return ""
    # A profile deleted since: its id is all the row keeps.
    return names.profiles.get(pid) or translate("audit.profile_id", id=pid)


@router.get("/audit")
def audit_page(request: Request, who: Signed) -> Response:
    engine = config(request).engine
    sent = values(request.query_params, who)
    people = (
        [(u.id, u.name or u.email or u.subject) for u in users.list_users(engine, who.actor)]
        if who.actor.admin
        else []
    )
    error, rows, older = None, [], None
    try:
        got = asked(sent, request.query_params.get("after"))
        found = auditexport.page(engine, who.actor, got.filters, got.after, PAGE)
        names = auditexport.names(engine, who.actor, found.items)
        rows = [row(e, names) for e in found.items]
        if found.next is not None:
            older = query(sent, after=auditexport.token(found.next))
    except (Invalid, NotFound) as exc:
        # A filter the service layer refused (a profile the viewer has none of, say):
        # the page again, the filters as typed, and why, instead of an error page.
        error = str(exc)
    return render.page(
        request,
        "audit.html",
        who,
        {
            "sent": sent,
            "people": people,
            "rows": rows,
            "error": error,
            "older": older,
            "paged": bool(request.query_params.get("after")),
            "filters": query(sent),
            "cap": f"{auditexport.EXPORT_CAP:,}",
        },
        status=422 if error else 200,
    )


@router.get("/audit/export.csv")
def export_csv(request: Request, who: Signed) -> Response:
    return _export(request, who, "csv")


@router.get("/audit/export.jsonl")
def export_jsonl(request: Request, who: Signed) -> Response:
    return _export(request, who, "jsonl")


def _export(request: Request, who: Signed, kind: str) -> Response:
    cfg = config(request)
    got = asked(values(request.query_params, who), request.query_params.get("after"))
    cap = auditexport.EXPORT_CAP  # read now: a test lowers it
    chunks = auditexport.walk(cfg.engine, who.actor, got.filters, got.after, cap)
    # The first page before the answer starts, so a filter the service layer refuses is
    # an error page, not a download cut short.
    first = next(chunks, None)
    pages = itertools.chain([] if first is None else [first], chunks)
    body = _csv(pages, cap) if kind == "csv" else _jsonl(pages, cap)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/jsonl; charset=utf-8"
    headers = {
        **security.headers(cfg),
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="gigmcp-audit-{stamp}.{kind}"',
        # The cap, stated up front; an export it cut ends with a line saying where the
        # rest begins.
        "X-Export-Row-Limit": str(cap),
    }
    return StreamingResponse(body, media_type=media, headers=headers)


def record(e: audit.AuditEntry, names: auditexport.Names) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _utc(e.at).isoformat(),
        "kind": e.action,
        "user_id": e.user_id,
        "user": names.users.get(e.user_id) if e.user_id is not None else None,
        "profile_id": e.profile_id,
        "profile": names.profiles.get(e.profile_id) if e.profile_id is not None else None,
        "server": e.server,
        "tool": e.tool,
        "outcome": e.outcome,
        "duration_ms": e.duration_ms,
        "arg_bytes": e.arg_bytes,
        "detail": e.detail,
    }


def cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never runs."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA) else text


def _csv(pages: Iterable[auditexport.Chunk], cap: int) -> Iterator[str]:
    buffer = io.StringIO()
    # Every field quoted (RFC 4180, CRLF lines): a ';' inside a cell never starts another
    # in spreadsheets whose list separator it is (OWASP's CSV injection advice).
    out = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    out.writerow(COLUMNS)
    for chunk in pages:
        out.writerows([cell(v) for v in record(e, chunk.names).values()] for e in chunk.items)
        if chunk.rest is not None:
            out.writerow([f"# {_cut(cap, chunk.rest)}"])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _jsonl(pages: Iterable[auditexport.Chunk], cap: int) -> Iterator[str]:
    for chunk in pages:
        lines = [json.dumps(record(e, chunk.names)) for e in chunk.items]
        if chunk.rest is not None:
            rest = auditexport.token(chunk.rest)
            lines.append(json.dumps({"truncated": True, "limit": cap, "after": rest}))
        yield "".join(f"{line}\n" for line in lines)


def _cut(cap: int, rest: audit.Cursor) -> str:
    # Machine-facing (a file, in the same words as its column names), not the page's.
    return (
        f"truncated: an export holds at most {cap} rows; "
        f"export again with after={auditexport.token(rest)} for the older ones"
    )
