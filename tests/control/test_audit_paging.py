"""Audit reads page by keyset — a cursor of the last (time, id) seen and a limit — so
paging is stable while rows keep arriving: no row twice, none skipped, and rows that
share a timestamp are split across pages by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gigmcp.control import audit
from gigmcp.control.actor import Actor
from gigmcp.errors import Invalid
from gigmcp.store.models import AuditRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _write(engine: Engine, user: Actor, times: list[datetime]) -> None:
    with Session(engine) as s, s.begin():
        for i, at in enumerate(times):
            s.add(AuditRow(at=at, action="test.row", outcome="ok", user_id=user.user_id,
                           detail=f"row {i}"))  # fmt: skip


def _all_pages(engine: Engine, user: Actor, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = audit.events(engine, user, after=cursor, limit=limit)
        seen.extend(e.id for e in page.items)
        if page.next is None:
            return seen
        cursor = page.next


def test_pages_cover_every_row_once_newest_first(engine: Engine, admin: Actor) -> None:
    # Four rows share each timestamp: page boundaries fall inside a tie.
    _write(engine, admin, [T0 + timedelta(seconds=i // 4) for i in range(23)])
    whole = audit.events(engine, admin, limit=500)
    assert whole.next is None and len(whole.items) == 23
    expected = [e.id for e in whole.items]
    assert [(e.at, e.id) for e in whole.items] == sorted(
        ((e.at, e.id) for e in whole.items), reverse=True
    )
    for limit in (1, 3, 4, 5, 22, 23):
        assert _all_pages(engine, admin, limit) == expected, limit


def test_rows_written_while_paging_shift_nothing(engine: Engine, admin: Actor) -> None:
    _write(engine, admin, [T0 + timedelta(seconds=i // 2) for i in range(10)])
    before = [e.id for e in audit.events(engine, admin, limit=500).items]
    seen: list[int] = []
    cursor = None
    step = 0
    while True:
        page = audit.events(engine, admin, after=cursor, limit=3)
        seen.extend(e.id for e in page.items)
        # Newer rows arrive between pages, some at the very time of the cursor.
        step += 1
        at = page.next.at if page.next is not None else T0
        _write(engine, admin, [T0 + timedelta(hours=step), at.replace(tzinfo=UTC)])
        if page.next is None:
            break
        cursor = page.next
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in before] == before
    # The rows written at the cursor's time, after it, have higher ids: they sort
    # before the cursor and never enter a later page.
    assert set(seen) == set(before)


def test_a_page_size_out_of_range_is_refused(engine: Engine, admin: Actor) -> None:
    for limit in (0, -1, audit.MAX_PAGE + 1):
        with pytest.raises(Invalid, match="limit"):
            audit.events(engine, admin, limit=limit)
