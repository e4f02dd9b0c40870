"""The dashboard's pages in-process, over the real control plane and store (SQLite and
PostgreSQL): what every page must hold whatever it shows, and the attacks on a browser
session, each a test that fails if its guard is removed.

Attacks:
- a page without a session, or with a revoked one, shows nothing and asks to sign in;
- the sign-in page's return_to never leads off the gateway;
- a form posted without the CSRF field, with another session's token, from another
  origin, or with neither Origin nor Sec-Fetch-Site, is refused and changes nothing;
- a page or a static file is never served without its security headers; a page may
  not be framed, nor run inline script, inline style or eval;
- a static file is looked up by its hashed name, never by a path (no traversal);
- an error page never shows a traceback, SQL or the value that was sent;
- a user's overview never counts another user's calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gigmcp.control import impersonation, websessions
from gigmcp.core.views import AuditEvent
from gigmcp.store.catalog import StoreCatalog
from tests.support.dashboard import ORIGIN, Dash, assert_safe_headers, dashboard


@pytest.fixture
async def dash(database_url: str, tmp_path: Path) -> AsyncIterator[Dash]:
    async with dashboard(database_url, tmp_path, impersonation=True) as d:
        yield d


async def test_attack_a_page_without_a_session_asks_to_sign_in(dash: Dash) -> None:
    c = dash.client()
    r = await c.get("/?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?return_to=%2F%3Fx%3D1"
    page = await c.get("/sign-in?return_to=%2F%3Fx%3D1")
    assert page.status_code == 200
    assert_safe_headers(page.headers)
    assert "gigmcp login-link" not in page.text  # links are off in this world
    # A session cookie that means nothing is the same as none.
    c.cookies.set(dash.cfg.cookie_name, "gig_ws_" + "A" * 43)
    assert (await c.get("/")).status_code == 303


@pytest.mark.parametrize(
    "return_to", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_attack_return_to_never_leaves_the_gateway(dash: Dash, return_to: str) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.get("/sign-in", params={"return_to": return_to})
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_the_overview_shows_the_viewers_own_activity(dash: Dash, database_url: str) -> None:
    catalog = StoreCatalog(database_url)
    try:
        for who, server, n in ((dash.alice, "github", 3), (dash.bob, "slack", 5)):
            for _ in range(n):
                catalog.record(AuditEvent("tools/call", "ok", who.user_id, None, server, "search"))
        await catalog.flush()
    finally:
        catalog.engine.dispose()
    alice = dash.browser(dash.alice)
    r = await alice.get("/")
    assert r.status_code == 200, r.text
    assert_safe_headers(r.headers)
    assert "github" in r.text and "slack" not in r.text
    assert "github_search" in r.text
    admin = await dash.browser(dash.admin).get("/")
    assert "github" in admin.text and "slack" in admin.text


async def test_attack_a_form_without_its_csrf_token_or_from_elsewhere_is_refused(
    dash: Dash,
) -> None:
    alice = dash.browser(dash.alice)
    other = dash.browser(dash.alice)  # Alice's second session: another token
    attempts = [
        await alice.post_form("/sign-out", {"x": "1"}, csrf=False),
        await alice.client.post("/sign-out", data={"csrf": other.csrf}, headers={"Origin": ORIGIN}),
        await alice.post_form("/sign-out", {}, origin="https://evil.example"),
        await alice.post_form("/sign-out", {}, origin=None),  # neither Origin nor Fetch
        await alice.client.post(
            "/sign-out",
            data={"csrf": alice.csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
        ),
    ]
    for r in attempts:
        assert r.status_code == 403, r.text
        assert other.csrf not in r.text  # a token sent is never echoed
        assert_safe_headers(r.headers)
    # Nothing changed: the session still opens the overview.
    assert (await alice.get("/")).status_code == 200
    # The page's own form, as a browser sends it without Origin, goes through.
    ok = await alice.client.post(
        "/sign-out", data={"csrf": alice.csrf}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 303


async def test_signing_out_revokes_the_session(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    token = alice.client.cookies[dash.cfg.cookie_name]
    r = await alice.post_form("/sign-out", {})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    assert websessions.resolve(dash.engine, token, dash.cfg.lifetimes) is None
    again = dash.client()
    again.cookies.set(dash.cfg.cookie_name, token)
    assert (await again.get("/")).status_code == 303


async def test_attack_a_form_that_is_not_url_encoded_is_refused(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    r = await alice.client.post(
        "/sign-out",
        content=b'{"csrf": "' + alice.csrf.encode() + b'"}',
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "expected a form" in r.text


async def test_static_files_are_named_by_content_and_kept_for_a_year(dash: Dash) -> None:
    page = (await dash.browser(dash.alice).get("/")).text
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)" integrity="(sha384-[^"]+)"', page)
    assert {u.split(".")[0] for u, _ in urls} == {"/static/app", "/static/htmx-2"}
    c = dash.client()
    for url, integrity in urls:
        r = await c.get(url)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["x-content-type-options"] == "nosniff"
        digest = base64.b64encode(hashlib.sha384(r.content).digest()).decode()
        assert integrity == f"sha384-{digest}"
    for path in ("/static/app.css", "/static/..%2F..%2Fapp.py", "/static/vendor/VENDOR.toml"):
        assert (await c.get(path)).status_code == 404


async def test_attack_error_pages_show_no_traceback_or_value(dash: Dash) -> None:
    alice = dash.browser(dash.alice)
    missing = await alice.get("/no-such-page")
    assert missing.status_code == 404
    assert_safe_headers(missing.headers)
    assert "Not found" in missing.text
    for r in (missing,):
        assert "Traceback" not in r.text and "SELECT" not in r.text


async def test_an_impersonating_administrator_sees_a_banner_and_can_stop(dash: Dash) -> None:
    admin = dash.browser(dash.admin)
    current = websessions.resolve(
        dash.engine, admin.client.cookies[dash.cfg.cookie_name], dash.cfg.lifetimes
    )
    assert current is not None
    impersonation.start(dash.engine, current, dash.alice.user_id, 10)
    page = await admin.get("/")
    assert "You are viewing the gateway as Alice" in page.text
    assert 'action="/impersonation/stop"' in page.text
    stopped = await admin.post_form("/impersonation/stop", {})
    assert stopped.status_code == 303
    assert "You are viewing" not in (await admin.get("/")).text


async def test_concurrent_pages_render(dash: Dash) -> None:
    """Pages render from worker threads; a burst of them must not trip over each other."""
    alice = dash.browser(dash.alice)
    got = await asyncio.gather(*(alice.get("/") for _ in range(20)))
    assert {r.status_code for r in got} == {200}


async def test_an_administrator_sees_the_gateways_health_and_a_user_does_not(
    database_url: str, tmp_path: Path
) -> None:
    from gigmcp.sandbox.doctor import recurring, run_checks

    checks = run_checks()  # the real host checks, as `gigmcp serve` runs them at start
    async with dashboard(
        database_url, tmp_path, host_checks=recurring(first=checks), instances=lambda: []
    ) as d:
        admin = (await d.browser(d.admin).get("/")).text
        assert "Gateway health" in admin
        assert "0 values sealed" in admin  # a vault with nothing in it yet
        assert "No signed registry is configured" in admin
        for c in checks:
            assert c.name in admin
        assert "No instance is running" in admin
        user = (await d.browser(d.alice).get("/")).text
        assert "Gateway health" not in user and "No instance is running" in user
