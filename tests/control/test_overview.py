"""The overview on both databases, fed through the gateway's own writers (the store
catalog's audit batches, the egress proxy's audit batches): calls and errors per day,
the busiest servers with their weeks, the busiest tools, egress by decision; each
user's own counters (the whole gateway's for an administrator); nothing older than
asked; and, over random traffic, exactly what the audit rows themselves add up to."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import overview, users
from gigmcp.control.actor import Actor
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.core.views import AuditEvent
from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.errors import Invalid
from gigmcp.store.activity import month_of, week_of
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.models import AuditRow

POLICY = RolePolicy(admin_subjects=frozenset({"root"}))
NOW = datetime.now(UTC)


def _people(catalog: StoreCatalog) -> tuple[Actor, Actor, Actor]:
    sign_in = users.sign_in
    e = catalog.engine
    return (
        sign_in(e, Identity("https://idp.test", "root"), POLICY),
        sign_in(e, Identity("https://idp.test", "bob"), POLICY),
        sign_in(e, Identity("https://idp.test", "alice"), POLICY),
    )


def _call(who: Actor, at: datetime, server: str, tool: str, outcome: str = "ok") -> AuditEvent:
    return AuditEvent(
        action="tools/call", outcome=outcome, user_id=who.user_id, server=server, tool=tool, at=at
    )


def _write(catalog: StoreCatalog, events: list[AuditEvent], egress: list[EgressEvent]) -> None:
    async def go() -> None:
        for e in events:
            catalog.record(e)
        await catalog.flush()
        writer = EgressAudit(catalog.engine)
        for x in egress:
            writer.record(x)
        await writer.flush()
        assert writer.written == len(egress)

    asyncio.run(go())


@pytest.fixture
def catalog(database_url: str) -> Iterator[StoreCatalog]:
    cat = StoreCatalog(database_url)
    yield cat
    cat.engine.dispose()


def test_calls_errors_and_egress_are_counted_per_day_server_and_tool(
    catalog: StoreCatalog,
) -> None:
    admin, bob, alice = _people(catalog)
    _write(
        catalog,
        [
            _call(bob, NOW, "github", "search"),
            _call(bob, NOW, "github", "search", "error"),
            _call(bob, NOW - timedelta(days=1), "slack", "post"),
            _call(bob, NOW - timedelta(days=300), "slack", "post"),  # older than 30 days
            _call(alice, NOW, "github", "search"),
            AuditEvent(action="profile.create", outcome="ok", user_id=bob.user_id, at=NOW),
        ],
        [
            EgressEvent("10.0.0.2", "allowed", "x", owner_id=bob.user_id, count=3, at=NOW),
            EgressEvent("10.0.0.2", "denied", "x", owner_id=bob.user_id, at=NOW),
            EgressEvent("10.0.0.2", "denied", "x", owner_id=bob.user_id, at=NOW),
            EgressEvent("10.0.0.9", "error", "x", at=NOW),  # no owner: the gateway's only
        ],
    )
    mine = overview.overview(catalog.engine, bob, days=30)
    assert mine.since == (NOW.date() - timedelta(days=29)).isoformat()
    assert [(d.day, d.calls, d.errors) for d in mine.days] == [
        ((NOW - timedelta(days=1)).date().isoformat(), 1, 0),
        (NOW.date().isoformat(), 2, 1),
    ]
    assert [(c.name, c.calls, c.errors) for c in mine.servers] == [
        ("github", 2, 1),
        ("slack", 1, 0),
    ]
    assert {(w.server, w.calls) for w in mine.server_weeks} >= {("github", 2)}
    assert sum(w.calls for w in mine.server_weeks) == 3
    assert (mine.tools[0].name, mine.tools[0].calls, mine.tools[0].errors) == (
        "github_search",
        2,
        1,
    )
    assert {(e.decision, e.requests) for e in mine.egress} == {("allowed", 3), ("denied", 2)}

    everyone = overview.overview(catalog.engine, admin, days=30)
    assert sum(d.calls for d in everyone.days) == 4
    assert everyone.servers[0].name == "github" and everyone.servers[0].calls == 3
    assert {(e.decision, e.requests) for e in everyone.egress} == {
        ("allowed", 3),
        ("denied", 2),
        ("error", 1),
    }
    hers = overview.overview(catalog.engine, alice, days=30)
    assert hers.egress == () and [s.name for s in hers.servers] == ["github"]
    # A year back reaches the old call.
    assert sum(d.calls for d in overview.overview(catalog.engine, bob, days=366).days) == 4


def test_top_bounds_the_servers_and_their_weeks(catalog: StoreCatalog) -> None:
    _, bob, _ = _people(catalog)
    _write(
        catalog,
        [_call(bob, NOW, f"srv-{i}", "t") for i in range(6) for _ in range(i + 1)],
        [],
    )
    o = overview.overview(catalog.engine, bob, days=7, top=3)
    assert [s.name for s in o.servers] == ["srv-5", "srv-4", "srv-3"]
    assert {w.server for w in o.server_weeks} == {"srv-5", "srv-4", "srv-3"}
    assert len(o.tools) == 3


@pytest.mark.parametrize(("days", "top"), [(0, 10), (367, 10), (30, 0), (30, 51)])
def test_out_of_range_windows_are_refused(catalog: StoreCatalog, days: int, top: int) -> None:
    _, bob, _ = _people(catalog)
    with pytest.raises(Invalid):
        overview.overview(catalog.engine, bob, days=days, top=top)


def test_over_random_traffic_the_overview_adds_up_what_the_audit_rows_hold(
    catalog: StoreCatalog,
) -> None:
    admin, bob, alice = _people(catalog)
    rng = random.Random(13)
    events = [
        _call(
            rng.choice([bob, alice]),
            NOW - timedelta(seconds=rng.randrange(200 * 86400)),
            f"srv-{rng.randrange(4)}",
            f"tool-{rng.randrange(3)}",
            "ok" if rng.random() < 0.8 else "error",
        )
        for _ in range(3000)
    ]
    _write(catalog, events, [])
    with Session(catalog.engine) as s:
        written = list(s.scalars(select(AuditRow).where(AuditRow.action == "tools/call")))
    assert len(written) == len(events)
    for who, days in ((bob, 120), (alice, 45), (admin, 182), (bob, 1)):
        first = NOW.date() - timedelta(days=days - 1)
        mine = [r for r in written if who.admin or r.user_id == who.user_id]
        day = Counter(r.at.date() for r in mine if r.at.date() >= first)
        fail = Counter(r.at.date() for r in mine if r.at.date() >= first and r.outcome != "ok")
        got = overview.overview(catalog.engine, who, days=days, top=50, tool_days=days)
        assert [(d.day, d.calls, d.errors) for d in got.days] == [
            (d.isoformat(), day[d], fail[d]) for d in sorted(day)
        ]
        in_weeks = [r for r in mine if r.at.date() >= week_of(first)]
        per_server = Counter(r.server for r in in_weeks)
        assert {(c.name, c.calls) for c in got.servers} == set(per_server.items())
        weekly = Counter((week_of(r.at.date()).isoformat(), r.server) for r in in_weeks)
        assert {((w.week, w.server), w.calls) for w in got.server_weeks} == set(weekly.items())
        in_months = [r for r in mine if r.at.date() >= month_of(first)]
        per_tool = Counter(f"{r.server}_{r.tool}" for r in in_months)
        assert {(c.name, c.calls) for c in got.tools} == set(per_tool.items())


def test_the_tool_ranking_counts_this_month_and_the_last_by_default(
    catalog: StoreCatalog,
) -> None:
    _, bob, _ = _people(catalog)
    old = NOW - timedelta(days=100)
    _write(catalog, [_call(bob, NOW, "s", "new"), _call(bob, old, "s", "old")], [])
    o = overview.overview(catalog.engine, bob)
    assert o.tools_since == month_of(NOW.date() - timedelta(days=30)).isoformat()
    assert [t.name for t in o.tools] == ["s_new"]
    assert sum(d.calls for d in o.days) == 2  # the days still reach 26 weeks back
    longer = overview.overview(catalog.engine, bob, tool_days=182)
    assert {t.name for t in longer.tools} == {"s_new", "s_old"}
