"""The Servers pages and the API's server list, in-process over the real control plane and
store (SQLite and PostgreSQL) with a real supervisor running real MCP server processes
(``mcp-server-time``, unjailed: this is about what the pages show and to whom).

What must hold:
- the list shows the servers the viewer may use, each with the viewer's instances and
  their state, restarts, last error, memory and last use; an administrator's shows
  every profile's; ``GET /api/v1/servers`` says the same;
- a server's page shows its instances and the log tail of each, which polls for its
  block alone (htmx) and has a plain Refresh link;
- attacks: another user's private server, another user's instance of a shared server
  and its log are not found, exactly as missing ones, on every route; a log line is
  shown as text, never as markup; a polled block whose session ended never turns into
  the sign-in page (htmx would swap it in), it stops the polling.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.control import profiles, servers, websessions
from gigmcp.core.instances import InstanceKey
from gigmcp.core.views import ServerDef
from gigmcp.store.models import Profile
from gigmcp.supervisor.launcher import PlainLauncher
from gigmcp.supervisor.logs import InstanceLog
from gigmcp.supervisor.supervisor import Supervisor
from gigmcp.upstream.types import InstanceUnavailable
from tests.support.dashboard import Dash, assert_safe_headers, dashboard
from tests.support.gateway import TIME
from tests.support.supervisor import Peer

CRASHING = ("/bin/sh", "-c", "echo 'cannot start: <b>bold</b>' >&2; exit 3")


@dataclass
class World:
    dash: Dash
    sup: Supervisor
    ids: dict[str, int]
    logs: Path


@pytest.fixture
async def w(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    logs = tmp_path / "logs"
    sup = Supervisor(PlainLauncher(), Peer(), logs_dir=logs)
    try:
        async with dashboard(database_url, tmp_path, instances=sup.status) as dash:
            e = dash.engine
            servers.add_server(e, dash.admin, "clock", list(TIME), {}, [], None)
            servers.add_server(e, dash.alice, "alices", list(CRASHING), {}, [], None)
            profiles.create_profile(e, dash.alice, "alice-p")
            profiles.create_profile(e, dash.bob, "bob-p")
            profiles.assign(e, dash.alice, "alice-p", "clock", True)
            profiles.assign(e, dash.alice, "alice-p", "alices", True)
            profiles.assign(e, dash.bob, "bob-p", "clock", True)
            with Session(e) as s:
                ids = {p.slug: p.id for p in s.scalars(select(Profile))}
            world = World(dash, sup, ids, logs)
            # Alice's two instances: the clock runs, her own server cannot start.
            await sup.get(InstanceKey(ids["alice-p"], "clock"), ServerDef(0, "clock", 0, TIME))
            with pytest.raises(InstanceUnavailable):
                await sup.get(
                    InstanceKey(ids["alice-p"], "alices"), ServerDef(0, "alices", 0, CRASHING)
                )
            yield world
    finally:
        await sup.shutdown()


def rows(html: str) -> list[str]:
    """Each table row's text, tags dropped and spaces folded."""
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        out.append(" ".join(re.sub(r"<[^>]+>", " ", row).split()))
    return out


def assert_no_inline_code(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\sstyle=|\son[a-z]+=|hx-on|javascript:", html), "inline code"


async def test_the_list_shows_each_viewers_instances(w: World) -> None:
    alice = await w.dash.browser(w.dash.alice).get("/servers")
    assert alice.status_code == 200, alice.text
    assert_safe_headers(alice.headers)
    assert_no_inline_code(alice.text)
    mine = rows(alice.text)
    assert any(r.startswith("alices alice-p crashed start failed (ref ") for r in mine), mine
    assert any(r.startswith("clock alice-p running 0 not measured ") for r in mine), mine
    assert "bob-p" not in alice.text

    bob = await w.dash.browser(w.dash.bob).get("/servers")
    assert bob.status_code == 200
    assert [r for r in rows(bob.text) if not r.startswith("Server ")] == [
        "clock bob-p idle 0 not measured —"
    ]
    assert "alice" not in bob.text.replace("Alice", "")  # neither her server nor profile

    admin = await w.dash.browser(w.dash.admin).get("/servers")
    seen = rows(admin.text)
    for prefix in ("alices alice-p crashed", "clock alice-p running", "clock bob-p idle"):
        assert any(r.startswith(prefix) for r in seen), (prefix, seen)


async def test_the_api_lists_each_servers_instances_for_the_caller(w: World) -> None:
    listed = (await w.dash.browser(w.dash.alice).get("/api/v1/servers")).json()
    by_name = {s["name"]: s for s in listed}
    assert set(by_name) == {"alices", "clock"}
    (clock,) = by_name["clock"]["instances"]
    assert clock["profile"] == "alice-p" and clock["state"] == "running"
    assert clock["restarts"] == 0 and clock["last_error"] is None
    assert clock["memory_bytes"] is None and clock["last_used"] and clock["started_at"]
    assert by_name["clock"]["command"] == list(TIME)  # the fields it had stay
    (crashed,) = by_name["alices"]["instances"]
    assert crashed["state"] == "crashed" and crashed["last_error"].startswith("start failed")

    bobs = (await w.dash.browser(w.dash.bob).get("/api/v1/servers")).json()
    assert [(s["name"], [i["profile"] for i in s["instances"]]) for s in bobs] == [
        ("clock", ["bob-p"])
    ]
    admins = (await w.dash.browser(w.dash.admin).get("/api/v1/servers")).json()
    assert {s["name"]: sorted(i["profile"] for i in s["instances"]) for s in admins} == {
        "alices": ["alice-p"],
        "clock": ["alice-p", "bob-p"],
    }


async def test_without_a_supervisor_servers_have_no_instances(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard(database_url, tmp_path) as dash:
        servers.add_server(dash.engine, dash.alice, "alices", list(TIME), {}, [], None)
        profiles.create_profile(dash.engine, dash.alice, "alice-p")
        profiles.assign(dash.engine, dash.alice, "alice-p", "alices", True)
        alice = dash.browser(dash.alice)
        assert (await alice.get("/api/v1/servers")).json()[0]["instances"] == []
        page = await alice.get("/servers/alices")
        assert page.status_code == 200 and "in none of your profiles" in page.text


async def test_a_servers_page_shows_its_instances_and_each_log_live(w: World) -> None:
    alice = w.dash.browser(w.dash.alice)
    page = await alice.get("/servers/clock")
    assert page.status_code == 200, page.text
    assert_safe_headers(page.headers)
    assert_no_inline_code(page.text)
    assert "Server clock" in page.text and "mcp-server-time" in page.text
    assert any(r.startswith("alice-p running 0 not measured") for r in rows(page.text))
    # The log tail, polled for its block alone, with a link that works without JS.
    assert "ready: " in page.text
    assert 'hx-get="/servers/clock/logs/alice-p"' in page.text
    assert 'hx-trigger="every 5s"' in page.text and 'hx-swap="outerHTML"' in page.text
    # Refresh, without JS: a new address each time (one differing only by its #fragment
    # would just scroll), landing on the log.
    (refresh,) = re.findall(r'href="(/servers/clock\?refresh=\d+#log-h-1)"', page.text)
    again = await alice.get(refresh.partition("#")[0])
    assert again.status_code == 200 and refresh not in again.text
    block = await alice.get("/servers/clock/logs/alice-p")
    assert block.status_code == 200
    assert_safe_headers(block.headers)
    assert "<html" not in block.text and "<nav" not in block.text
    assert "ready: " in block.text and 'hx-get="/servers/clock/logs/alice-p"' in block.text
    # A new line shows at the next poll.
    InstanceLog(w.logs, InstanceKey(w.ids["alice-p"], "clock")).write("a line just written")
    assert "a line just written" in (await alice.get("/servers/clock/logs/alice-p")).text


async def test_attack_a_log_line_is_text_never_markup(w: World) -> None:
    page = await w.dash.browser(w.dash.alice).get("/servers/alices")
    assert page.status_code == 200
    assert "<b>bold</b>" not in page.text
    assert "stderr: cannot start: &lt;b&gt;bold&lt;/b&gt;" in page.text
    # The crash's reference in the status is the one on the log's line with the cause.
    (ref,) = set(re.findall(r"start failed \(ref ([0-9a-f]{8})\)", page.text))
    assert f"start failed (ref {ref}): " in page.text


async def test_attack_another_users_server_instance_and_log_are_not_found(w: World) -> None:
    bob = w.dash.browser(w.dash.bob)
    missing = [
        "/servers/no-such",
        "/servers/no-such/logs/alice-p",
        "/servers/clock/logs/no-such",
        "/servers/clock?profile=no-such",
    ]
    hers = [
        "/servers/alices",  # her private server
        "/servers/alices/logs/alice-p",  # its log
        "/servers/clock/logs/alice-p",  # her instance of a shared server
        "/servers/clock?profile=alice-p",  # and its log on the server's page
    ]

    def shape(text: str) -> str:
        return re.sub(r"no-such|alices|alice-p", "X", text)

    for theirs, absent in zip(hers, missing, strict=True):
        got, ref = await bob.get(theirs), await bob.get(absent)
        assert got.status_code == 404 == ref.status_code, (theirs, got.status_code)
        assert shape(got.text) == shape(ref.text), theirs
        assert "cannot start" not in got.text and "ready: " not in got.text
    # Bob's own instance of the shared server: his (idle, not run: no log yet).
    own = await bob.get("/servers/clock/logs/bob-p")
    assert own.status_code == 200 and "No log yet" in own.text
    page = await bob.get("/servers/clock")
    assert "alice-p" not in page.text and "bob-p" in page.text
    # An administrator sees both.
    admin = w.dash.browser(w.dash.admin)
    assert (await admin.get("/servers/alices/logs/alice-p")).status_code == 200
    both = (await admin.get("/servers/clock")).text
    assert "alice-p" in both and "bob-p" in both


async def test_attack_a_polled_log_whose_session_ended_stops_instead_of_signing_in(
    w: World,
) -> None:
    alice = w.dash.browser(w.dash.alice)
    token = alice.client.cookies[w.dash.cfg.cookie_name]
    current = websessions.resolve(w.dash.engine, token, w.dash.cfg.lifetimes)
    assert current is not None
    websessions.close(w.dash.engine, current)
    block = await alice.get("/servers/clock/logs/alice-p", headers={"HX-Request": "true"})
    assert block.status_code == 286  # htmx stops polling on it
    assert "session ended" in block.text and "hx-get" not in block.text
    assert "ready: " not in block.text and "<form" not in block.text
    assert_safe_headers(block.headers)
    # The page itself still asks to sign in.
    assert (await alice.get("/servers/clock")).status_code == 303


async def test_a_servers_page_shows_a_few_logs_and_any_other_on_request(w: World) -> None:
    """Each log block is a file read per poll: the page shows the most recently used
    instances' logs, and any other when its profile is picked in the table."""
    e, admin = w.dash.engine, w.dash.admin
    for n in range(5):
        profiles.create_profile(e, admin, f"extra-{n}")
        profiles.assign(e, admin, f"extra-{n}", "clock", True)
    browser = w.dash.browser(admin)
    page = (await browser.get("/servers/clock")).text
    blocks = re.findall(r'hx-get="/servers/clock/logs/([a-z0-9-]+)"', page)
    assert len(blocks) == 5 and blocks[0] == "alice-p"  # the one used most recently first
    assert "Not shown: the logs of less recently used instances (2)" in page
    for slug in ("alice-p", "bob-p", "extra-0", "extra-4"):
        assert f'href="/servers/clock?profile={slug}#logs-h"' in page
    picked = (await browser.get("/servers/clock?profile=extra-4")).text
    assert re.findall(r'hx-get="/servers/clock/logs/([a-z0-9-]+)"', picked) == ["extra-4"]
    assert re.search(r'href="/servers/clock\?profile=extra-4&amp;refresh=\d+#log-h-1"', picked)
    assert 'href="/servers/clock#logs-h"' in picked
