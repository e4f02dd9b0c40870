"""What a person sees first: their tool calls and errors per day and per server, the
busiest tools, and what their servers' traffic through the egress proxy came to.

Owns the aggregates, computed by the database (grouped counts over indexed columns,
never rows carried to Python), over the actor's own rows (every row, for an
administrator), for the last ``days``. It must never return an argument value, a path
or anything but names and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import AuditRow, EgressAuditRow

CALL = "tools/call"
MAX_DAYS = 366


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
class Egress:
    decision: str  # allowed | denied | error
    requests: int


@dataclass(frozen=True, slots=True)
class Overview:
    days: tuple[Day, ...]
    servers: tuple[Count, ...]
    tools: tuple[Count, ...]
    egress: tuple[Egress, ...]


def overview(engine: Engine, actor: Actor, days: int = 182, top: int = 10) -> Overview:
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days: 1 to {MAX_DAYS}")
    since = datetime.now(UTC) - timedelta(days=days)
    calls = [AuditRow.action == CALL, AuditRow.at >= since]
    if not actor.admin:
        calls.append(AuditRow.user_id == actor.user_id)
    failed = func.sum(case((AuditRow.outcome != "ok", 1), else_=0))
    day = func.date(AuditRow.at)
    with Session(engine) as s:
        per_day = s.execute(
            select(day, func.count(), failed).where(*calls).group_by(day).order_by(day)
        ).all()
        per_server = s.execute(
            select(AuditRow.server, func.count(), failed)
            .where(*calls)
            .group_by(AuditRow.server)
            .order_by(func.count().desc())
        ).all()
        tool_name = AuditRow.server + "_" + AuditRow.tool
        busiest = s.execute(
            select(tool_name, func.count(), failed)
            .where(*calls)
            .group_by(AuditRow.server, AuditRow.tool)
            .order_by(func.count().desc())
            .limit(top)
        ).all()
        eg = [EgressAuditRow.at >= since]
        if not actor.admin:
            eg.append(EgressAuditRow.owner_id == actor.user_id)
        egress = s.execute(
            select(EgressAuditRow.decision, func.sum(EgressAuditRow.count))
            .where(*eg)
            .group_by(EgressAuditRow.decision)
            .order_by(EgressAuditRow.decision)
        ).all()
    return Overview(
        tuple(Day(str(d), int(n), int(e or 0)) for d, n, e in per_day),
        tuple(Count(str(name), int(n), int(e or 0)) for name, n, e in per_server),
        tuple(Count(str(name), int(n), int(e or 0)) for name, n, e in busiest),
        tuple(Egress(str(d), int(n or 0)) for d, n in egress),
    )
