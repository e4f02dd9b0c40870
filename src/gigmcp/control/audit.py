"""Reading the audit log: newest first, a page at a time.

Owns the audit query and its keyset paging: a page ends with a cursor, the (time, id)
of its last row, and the next page starts strictly after it, so rows written while an
actor pages (they are newer, so they sort before the cursor) never shift a page, repeat
a row or skip one. An actor who is not an admin reads only the rows of their own
actions. It must never return a row another user acted in to a non-admin, and never
change a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, tuple_
from sqlalchemy.orm import Session

from gigmcp.control import rows
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import AuditRow

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the time and id of its last row."""

    at: datetime
    id: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row: names and sizes, never argument values or secrets."""

    id: int
    at: datetime
    action: str
    outcome: str
    user_id: int | None
    profile_id: int | None
    server: str | None
    tool: str | None
    duration_ms: float | None
    arg_bytes: int | None
    detail: str | None
    # The administrator who acted while viewing the gateway as ``user_id``; None otherwise.
    real_user_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: tuple[AuditEntry, ...]
    # None when this page holds the oldest row.
    next: Cursor | None


def events(
    engine: Engine,
    actor: Actor,
    after: Cursor | None = None,
    limit: int = 50,
    action: str | None = None,
    *,
    user_id: int | None = None,
    profile: str | None = None,
    server: str | None = None,
    tool: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """Up to ``limit`` rows older than ``after`` (the newest, without it), newest first,
    matching every filter given. A user reads only their own rows (``user_id`` is an
    administrator's filter); ``profile`` must be one the actor may see."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1-{MAX_PAGE}, not {limit}")
    named = {"action": action, "profile": profile, "server": server, "tool": tool}
    for name, text in (*named.items(), ("outcome", outcome)):
        # PostgreSQL refuses a NUL in text outright (a driver error, not an answer).
        if text is not None and "\x00" in text:
            raise Invalid(f"{name}: contains a NUL character")
    query = select(AuditRow)
    if not actor.admin:
        query = query.where(AuditRow.user_id == actor.user_id)
    elif user_id is not None:
        query = query.where(AuditRow.user_id == user_id)
    if action is not None:
        query = query.where(AuditRow.action == action)
    if profile is not None:
        with Session(engine) as s:
            pid = rows.profile(s, actor, profile, hint=False).id
        query = query.where(AuditRow.profile_id == pid)
    for column, value in (
        (AuditRow.server, server),
        (AuditRow.tool, tool),
        (AuditRow.outcome, outcome),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    if after is not None:
        # A row value: both databases turn it into one index range (an OR of the two
        # halves is a filter PostgreSQL applies row by row from the newest).
        query = query.where(tuple_(AuditRow.at, AuditRow.id) < tuple_(after.at, after.id))
    # One more than asked: whether a next page exists, without a second query.
    query = query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit + 1)
    with Session(engine) as s:
        found = list(s.scalars(query))
    items = tuple(
        AuditEntry(
            r.id,
            r.at,
            r.action,
            r.outcome,
            r.user_id,
            r.profile_id,
            r.server,
            r.tool,
            r.duration_ms,
            r.arg_bytes,
            r.detail,
            r.real_user_id,
        )
        for r in found[:limit]
    )
    more = len(found) > limit
    return AuditPage(items, Cursor(items[-1].at, items[-1].id) if more else None)
