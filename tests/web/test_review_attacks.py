"""Attacks an independent review of the dashboard found, each a test that failed before
its fix (on SQLite and PostgreSQL):

- a burst of page loads by one user ignored the per-user rate limit the API applies;
- a server page's log poll (htmx, every few seconds) kept an unattended session alive
  past its idle expiry;
- a CSV export cell with ``;`` split into cells starting with ``=`` in spreadsheets
  whose list separator is ``;``;
- a non-ASCII digit in the audit page's user filter was a 500;
- a page opened from a link on another site had no CSRF token for its forms (the CSRF
  cookie was SameSite=Strict, so the browser did not send it on that navigation).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gigmcp.api.auth import set_session_cookie
from gigmcp.api.ratelimit import Rate
from gigmcp.control import profiles, servers, websessions
from gigmcp.core.views import AuditEvent
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.models import WebSession
from tests.support.dashboard import Dash, dashboard


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, instances=lambda: []) as d:
        yield d


async def test_attack_a_burst_of_pages_meets_the_per_user_limit(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard(database_url, tmp_path, user_rate=Rate(per_second=0.001, burst=2)) as d:
        alice = d.browser(d.alice)
        codes = [(await alice.get("/profiles")).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        # The API and the pages draw on one allowance per user.
        assert (await alice.get("/api/v1/me")).status_code == 429
        # Another user is not held back by Alice's burst.
        assert (await d.browser(d.bob).get("/profiles")).status_code == 200


async def test_attack_a_log_poll_does_not_keep_an_idle_session_alive(dash: Dash) -> None:
    servers.add_server(dash.engine, dash.admin, "shared", ["/bin/true"], {}, [], None)
    profiles.create_profile(dash.engine, dash.alice, "alice-p")
    profiles.assign(dash.engine, dash.alice, "alice-p", "shared", True)
    alice = dash.browser(dash.alice)
    almost = datetime.now(UTC) - dash.cfg.lifetimes.idle + timedelta(seconds=30)
    with Session(dash.engine) as s, s.begin():
        s.execute(update(WebSession).values(last_seen_at=almost))
    r = await alice.get("/servers/shared/logs/alice-p")
    assert r.status_code == 200
    with Session(dash.engine) as s:
        seen = websessions.utc(s.scalar(select(WebSession.last_seen_at)))
    assert abs((seen - almost).total_seconds()) < 1, "the poll counted as activity"
    # A page the person opens does count.
    await alice.get("/servers/shared")
    with Session(dash.engine) as s:
        seen = websessions.utc(s.scalar(select(WebSession.last_seen_at)))
    assert (datetime.now(UTC) - seen).total_seconds() < 5


async def test_attack_a_csv_cell_cannot_start_a_formula_after_a_semicolon(
    dash: Dash, database_url: str
) -> None:
    catalog = StoreCatalog(database_url)
    try:
        catalog.record(
            AuditEvent(
                "tools/call", "ok", dash.alice.user_id, None, "s", "x;=1+1;=cmd|' /C calc'!A0"
            )
        )
        await catalog.flush()
    finally:
        catalog.engine.dispose()
    body = (await dash.browser(dash.alice).get("/audit/export.csv")).text
    line = next(line for line in body.splitlines() if "cmd|" in line)
    # Every cell quoted: a ';' inside one never starts another, in any locale.
    assert line.startswith('"') and line.endswith('"')
    assert "\"x;=1+1;=cmd|' /C calc'!A0\"" in line
    rows = list(csv.reader(io.StringIO(body)))
    assert any("x;=1+1;=cmd|' /C calc'!A0" in row for row in rows)


async def test_a_non_ascii_digit_in_the_user_filter_is_a_clear_error(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    for path in ("/audit?user=%C2%B2", "/audit/export.csv?user=%C2%B2"):
        r = await admin.get(path)
        assert r.status_code == 422, (path, r.status_code)
        assert "Traceback" not in r.text


async def test_a_page_reached_from_another_site_still_carries_its_csrf_token(
    dash: Dash,
) -> None:
    fresh = websessions.open_session(dash.engine, dash.alice, dash.cfg.lifetimes, "t")
    response = Response()
    set_session_cookie(response, dash.cfg, fresh)
    cookies = response.headers.getlist("set-cookie")
    csrf = next(c for c in cookies if c.startswith(dash.cfg.csrf_cookie_name + "="))
    # Lax: sent on a top-level navigation from another site, so the page has its token
    # (worthless alone: the server checks it against the session's hash and the origin).
    assert "samesite=lax" in csrf.lower()
