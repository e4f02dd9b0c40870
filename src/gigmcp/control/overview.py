"""What a person sees first: their tool calls and errors per day and per server, the
busiest tools, and what their servers' traffic through the egress proxy came to.

Owns the reading of the roll-up counters that store/activity.py keeps as audit rows are
written: a few hundred counters, never a scan of the audit tables, however many rows
they hold. An actor reads their own counters (the whole gateway's, for an
administrator), for the last ``days`` UTC days, today included. Server totals count the
weeks (from Monday) that the period touches, and the tool ranking the calendar months
that the last ``tool_days`` touch (by default this month and the last): the grains the
counters keep. It must never return an argument value, a path or anything
but names and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.orm import Session

from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store import activity
from gigmcp.store.models import CallCount, EgressCount

MAX_DAYS = 366
MAX_TOP = 50


@dataclass(frozen=True, slots=True)
class Day:
    day: str  # YYYY-MM-DD, UTC
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Count:
    name: str
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class ServerWeek:
    week: str  # the Monday, YYYY-MM-DD
    server: str
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Egress:
    decision: str  # allowed | denied | error
    requests: int


@dataclass(frozen=True, slots=True)
class Overview:
    since: str  # the first day counted, YYYY-MM-DD
    tools_since: str  # the first day of the first month the tool ranking counts
    days: tuple[Day, ...]  # days without calls are left out
    servers: tuple[Count, ...]  # busiest first, at most ``top``
    server_weeks: tuple[ServerWeek, ...]  # the same servers, week by week
    tools: tuple[Count, ...]  # busiest first, at most ``top``
    egress: tuple[Egress, ...]


def overview(
    engine: Engine, actor: Actor, days: int = 182, top: int = 10, tool_days: int = 31
) -> Overview:
    """``days`` of calls per day and per server; the busiest tools over the months that
    the last ``tool_days`` touch (a tool ranking reads a counter per tool and month, so
    its window is kept short by default: the current and the previous month)."""
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days: 1 to {MAX_DAYS}")
    if not 1 <= tool_days <= MAX_DAYS:
        raise Invalid(f"tool_days: 1 to {MAX_DAYS}")
    if not 1 <= top <= MAX_TOP:
        raise Invalid(f"top: 1 to {MAX_TOP}")
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    tools_first = today - timedelta(days=tool_days - 1)
    scope = activity.EVERYONE if actor.admin else actor.user_id
    calls, errors = func.sum(CallCount.calls), func.sum(CallCount.errors)

    def grain(g: str, start: date) -> list[ColumnElement[bool]]:
        return [CallCount.scope == scope, CallCount.grain == g, CallCount.start >= start]

    with Session(engine) as s:
        per_day = s.execute(
            select(CallCount.start, CallCount.calls, CallCount.errors)
            .where(*grain(activity.DAY, first))
            .order_by(CallCount.start)
        ).all()
        weeks = grain(activity.WEEK, activity.week_of(first))
        busiest = s.execute(
            select(CallCount.server, calls, errors)
            .where(*weeks)
            .group_by(CallCount.server)
            .order_by(calls.desc(), CallCount.server)
            .limit(top)
        ).all()
        series = s.execute(
            select(CallCount.start, CallCount.server, CallCount.calls, CallCount.errors)
            .where(*weeks, CallCount.server.in_([name for name, _, _ in busiest]))
            .order_by(CallCount.start, CallCount.server)
        ).all()
        tools = s.execute(
            select(CallCount.server, CallCount.tool, calls, errors)
            .where(*grain(activity.MONTH, activity.month_of(tools_first)))
            .group_by(CallCount.server, CallCount.tool)
            .order_by(calls.desc(), CallCount.server, CallCount.tool)
            .limit(top)
        ).all()
        egress = s.execute(
            select(EgressCount.decision, func.sum(EgressCount.requests))
            .where(EgressCount.scope == scope, EgressCount.day >= first)
            .group_by(EgressCount.decision)
            .order_by(EgressCount.decision)
        ).all()
    return Overview(
        first.isoformat(),
        activity.month_of(tools_first).isoformat(),
        tuple(Day(d.isoformat(), n, e) for d, n, e in per_day),
        tuple(Count(name, int(n), int(e)) for name, n, e in busiest),
        tuple(ServerWeek(w.isoformat(), name, n, e) for w, name, n, e in series),
        tuple(Count(f"{srv}_{tool}", int(n), int(e)) for srv, tool, n, e in tools),
        tuple(Egress(d, int(n)) for d, n in egress),
    )
