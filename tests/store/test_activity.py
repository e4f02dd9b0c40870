"""The overview's roll-up counters, on both databases: migration 0008 fills them from
the rows written before it exactly as the writers count rows written after it (the day,
the week from Monday and the month, computed by each database's SQL and by Python,
agree across week, month and year boundaries); and writers racing on one counter (two
replicas) both count."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from gigmcp.store import activity
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.egress_audit import insert_rows
from gigmcp.store.models import AuditRow, CallCount, EgressAuditRow, EgressCount

# Across the end of a year, so weeks and months straddle one.
END = datetime(2027, 1, 9, 18, 0, tzinfo=UTC)


def _traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(5)
    calls = [
        {
            "at": END - timedelta(seconds=rng.randrange(70 * 86400)),
            "action": rng.choice(["tools/call"] * 8 + ["profile.create", "tools/list"]),
            "outcome": rng.choice(["ok", "ok", "ok", "error", "denied"]),
            "user_id": rng.choice([None, 1, 2, 3]),
            "server": rng.choice([None, "github", "slack", "time"]),
            "tool": rng.choice([None, "search", "post"]),
        }
        for _ in range(2000)
    ]
    egress = [
        {
            "at": END - timedelta(seconds=rng.randrange(70 * 86400)),
            "owner_id": rng.choice([None, 1, 2]),
            "source_ip": "10.0.0.2",
            "decision": rng.choice(["allowed", "denied", "error"]),
            "reason": "x",
            "count": rng.choice([1, 1, 1, 7]),
        }
        for _ in range(500)
    ]
    return calls, egress


def _counters(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with Session(engine) as s:
        calls = s.execute(
            select(
                CallCount.scope,
                CallCount.grain,
                CallCount.start,
                CallCount.server,
                CallCount.tool,
                CallCount.calls,
                CallCount.errors,
            ).order_by(*CallCount.__table__.primary_key)
        ).all()
        egress = s.execute(
            select(
                EgressCount.scope, EgressCount.day, EgressCount.decision, EgressCount.requests
            ).order_by(*EgressCount.__table__.primary_key)
        ).all()
    return [tuple(r) for r in calls], [tuple(r) for r in egress]


def test_the_migration_counts_old_rows_as_the_writers_count_new_ones(
    database_url: str, tmp_path: Any
) -> None:
    calls, egress = _traffic()
    # Before 0008: the rows are there, the counters are not; the upgrade fills them.
    old = make_engine(database_url)
    migrate(old, "0007")
    with old.begin() as conn:
        conn.execute(insert(AuditRow), calls)
        conn.execute(insert(EgressAuditRow), egress)
    migrate(old)
    filled = _counters(old)
    old.dispose()
    # After 0008: the writers count as they write (the catalog's batch is a Session).
    new = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    migrate(new)
    with Session(new) as s, s.begin():
        activity.add_calls(
            s,
            (
                activity.Call(c["at"], c["user_id"], c["server"], c["tool"], c["outcome"] != "ok")
                for c in calls
                if c["action"] == activity.CALL
            ),
        )
    insert_rows(new, egress)
    written = _counters(new)
    new.dispose()
    assert len(filled[0]) > 400 and len(filled[1]) > 100
    assert {g for _, g, *_ in filled[0]} == {"d", "w", "m"}
    assert filled == written


def test_writers_racing_on_one_counter_both_count(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    at = datetime(2026, 12, 3, 9, tzinfo=UTC)
    threads, batches, per_batch = 4, 20, 5

    def writer() -> None:
        for _ in range(batches):
            with Session(engine) as s, s.begin():
                activity.add_calls(s, [activity.Call(at, 1, "github", "search", False)] * per_batch)
            insert_rows(
                engine,
                [{"at": at, "owner_id": 1, "source_ip": "10.0.0.2", "decision": "allowed",
                  "reason": "x", "count": 2}],
            )  # fmt: skip

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    calls, egress = _counters(engine)
    engine.dispose()
    total = threads * batches * per_batch
    # Three grains, for the user and for everyone: each counter saw every call.
    assert len(calls) == 6 and {c[5] for c in calls} == {total}
    assert [e[3] for e in egress] == [threads * batches * 2] * 2
