"""The overview's aggregates on both databases: calls and errors per day, per server and
per tool, egress requests by decision, each user's own (everything, for an admin), and
nothing older than asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gigmcp.control import overview, users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.store.models import AuditRow, EgressAuditRow


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def test_calls_errors_and_egress_are_counted_per_day_server_and_tool(engine: Engine) -> None:
    policy = RolePolicy(admin_subjects=frozenset({"root"}))
    admin = users.sign_in(engine, Identity("https://idp.test", "root"), policy)
    bob = users.sign_in(engine, Identity("https://idp.test", "bob"), policy)
    alice = users.sign_in(engine, Identity("https://idp.test", "alice"), policy)
    now = datetime.now(UTC).replace(hour=12)
    rows = [
        (bob, now, "github", "search", "ok"),
        (bob, now, "github", "search", "error"),
        (bob, now - timedelta(days=1), "slack", "post", "ok"),
        (bob, now - timedelta(days=400), "slack", "post", "ok"),  # too old
        (alice, now, "github", "search", "ok"),
    ]
    with Session(engine) as s, s.begin():
        for who, at, server, tool, outcome in rows:
            s.add(
                AuditRow(
                    at=at,
                    action="tools/call",
                    outcome=outcome,
                    user_id=who.user_id,
                    server=server,
                    tool=tool,
                )
            )
        s.add(AuditRow(at=now, action="profile.create", outcome="ok", user_id=bob.user_id))
        for decision, count in (("allowed", 3), ("denied", 1)):
            s.add(
                EgressAuditRow(
                    at=now,
                    owner_id=bob.user_id,
                    source_ip="10.0.0.2",
                    decision=decision,
                    reason="x",
                    count=count,
                )
            )
    mine = overview.overview(engine, bob, days=30)
    assert [(d.calls, d.errors) for d in mine.days] == [(1, 0), (2, 1)]
    assert mine.days[-1].day == now.date().isoformat()
    assert [(c.name, c.calls, c.errors) for c in mine.servers] == [
        ("github", 2, 1),
        ("slack", 1, 0),
    ]
    assert mine.tools[0].name == "github_search" and mine.tools[0].calls == 2
    assert {(e.decision, e.requests) for e in mine.egress} == {("allowed", 3), ("denied", 1)}
    everyone = overview.overview(engine, admin, days=30)
    assert sum(d.calls for d in everyone.days) == 4
    assert overview.overview(engine, alice, days=30).egress == ()
