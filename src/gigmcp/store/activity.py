"""The overview's counters: tool calls and their errors, and egress requests, rolled up
as the audit rows are written, so that charts read a few hundred counters instead of
scanning audit tables of millions of rows.

Owns the roll-up tables' writes. A batch of audit events (or of egress rows) becomes one
upsert per counter it touches, inside the writer's own transaction, so a counter never
disagrees with the rows it counts; and the database adds (``calls = calls + excluded``),
not the process, so two replicas adding to one counter both count. It must never decide
what is recorded, never read the counters for anyone (control/overview.py does, with the
actor's rights), and never run on the event loop: its callers write from a worker
thread.

The grains, each the coarsest that its chart needs (a finer one would multiply rows):
- ``d``: calls and errors per day, all servers (the activity heatmap, the daily chart);
- ``w``: per week (from Monday) and server (calls and errors per server over time);
- ``m``: per calendar month, server and tool (the busiest tools).
Each is kept for the user who acted (``scope`` = their id) and for the whole gateway
(``scope`` = 0). Days are UTC days. Migration 0008 fills the same counters from the rows
written before it, and a test checks that both ways count alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gigmcp.store.models import CallCount, EgressCount

CALL = "tools/call"
EVERYONE = 0  # the scope of the gateway-wide counters (user ids start at 1)
DAY, WEEK, MONTH = "d", "w", "m"


@dataclass(frozen=True, slots=True)
class Call:
    """One finished tool call, as the roll-up needs it: no arguments, no detail."""

    at: datetime
    user_id: int | None
    server: str | None
    tool: str | None
    failed: bool


def utc_day(at: datetime) -> date:
    # A naive time is UTC already (SQLite hands times back without their zone).
    return (at.astimezone(UTC) if at.tzinfo else at).date()


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def month_of(day: date) -> date:
    return day.replace(day=1)


def add_calls(session: Session, calls: Iterable[Call]) -> None:
    """Count ``calls`` into the call counters, in ``session``'s transaction."""
    totals: Counter[tuple[int, str, date, str, str]] = Counter()
    failures: Counter[tuple[int, str, date, str, str]] = Counter()
    for c in calls:
        day = utc_day(c.at)
        keys = [(DAY, day, "", "")]
        if c.server is not None:
            keys.append((WEEK, week_of(day), c.server, ""))
            if c.tool is not None:
                keys.append((MONTH, month_of(day), c.server, c.tool))
        scopes = (EVERYONE,) if c.user_id is None else (EVERYONE, c.user_id)
        for scope in scopes:
            for grain, start, server, tool in keys:
                key = (scope, grain, start, server, tool)
                totals[key] += 1
                failures[key] += c.failed
    if not totals:
        return
    # Sorted keys: two replicas upserting overlapping counters take the rows' locks in
    # one order, so PostgreSQL never has to break a deadlock between them.
    rows = [
        {
            "scope": k[0],
            "grain": k[1],
            "start": k[2],
            "server": k[3],
            "tool": k[4],
            "calls": n,
            "errors": failures[k],
        }
        for k, n in sorted(totals.items())
    ]
    _upsert(session.connection(), CallCount.__table__, rows, ("calls", "errors"))  # type: ignore[arg-type]


def add_egress(conn: Connection, events: Iterable[tuple[datetime, int | None, str, int]]) -> None:
    """Count egress rows, given as (time, owner id, decision, events it stands for),
    into the egress counters, in ``conn``'s transaction."""
    totals: Counter[tuple[int, date, str]] = Counter()
    for at, owner, decision, count in events:
        day = utc_day(at)
        for scope in (EVERYONE,) if owner is None else (EVERYONE, owner):
            totals[(scope, day, decision)] += count
    if totals:
        rows = [
            {"scope": k[0], "day": k[1], "decision": k[2], "requests": n}
            for k, n in sorted(totals.items())
        ]
        _upsert(conn, EgressCount.__table__, rows, ("requests",))  # type: ignore[arg-type]


def _upsert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], add: tuple[str, ...]
) -> None:
    # INSERT … ON CONFLICT DO UPDATE is spelt alike by both databases, but SQLAlchemy
    # builds it per dialect.
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    keys = [c.name for c in table.primary_key.columns]
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + stmt.excluded[name] for name in add}
    )
    conn.execute(stmt, rows)
