"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
`gigmcp serve` signed in through a real OpenID provider (oidc-provider on Node 22): the
pages as people meet them, and the attacks a browser can carry.

Attacks, each a test that fails if its guard is removed:
- a Content-Security-Policy violation on any page (inline script, style or eval);
- the dashboard loaded in a frame of another site;
- a cross-site form posted at the dashboard with the victim's cookies;
and accessibility: axe-core finds no serious or critical violation on any page.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import browser as chrome
from tests.support.gateway import TIME, GatewayProc, free_port, gateway
from tests.support.oidc import Account, Client, OidcProvider, start_provider

pytestmark = pytest.mark.skipif(chrome.unavailable() is not None, reason=chrome.unavailable() or "")

ACCOUNTS = [
    Account("alice", "alice-pw", "alice@example.test", True, "Alice", groups=["gig-admins"]),
    Account("bob", "bob-pw", "bob@example.test", True, "Bob"),
]
# Every page a signed-in user can open without an object of their own.
USER_PAGES = ["/"]


@dataclass
class World:
    gw: GatewayProc
    idp: OidcProvider
    browser: Any

    def signed_in(self, who: str) -> chrome.Watched:
        w = chrome.Watched.open(self.browser)
        chrome.oidc_sign_in(w.page, self.gw.base, who, f"{who}-pw")
        return w


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/api/auth/callback"
    client = Client("gigmcp", [callback], post_logout_redirect_uris=[f"http://127.0.0.1:{port}/"])
    with (
        start_provider(tmp, clients=[client], accounts=ACCOUNTS) as idp,
        gateway(tmp) as g,
        chrome.chromium() as browser,
    ):
        g.add_server("time", TIME)
        g.start(
            port=port,
            **chrome.oidc_settings(idp.issuer, callback),
        )
        yield World(g, idp, browser)


def test_signing_in_through_the_identity_provider_lands_on_the_overview(world: World) -> None:
    w = world.signed_in("bob")
    try:
        assert w.page.get_by_role("heading", level=1).inner_text() == "Overview"
        assert "Bob" in w.page.locator(".who").inner_text()
        assert w.csp_violations() == []
    finally:
        w.close()


def test_attack_no_page_breaks_the_content_security_policy(world: World) -> None:
    for who in ("alice", "bob"):
        w = world.signed_in(who)
        try:
            for path in USER_PAGES:
                w.page.goto(world.gw.base + path)
                w.page.wait_for_load_state("networkidle")
                assert w.csp_violations() == [], f"{who} {path}: {w.csp_violations()}"
        finally:
            w.close()


def test_every_page_passes_axe(world: World) -> None:
    anonymous = chrome.Watched.open(world.browser)
    try:
        anonymous.page.goto(world.gw.base + "/sign-in")
        found = chrome.axe(anonymous.page)
        assert found == [], "/sign-in\n" + chrome.describe(found)
    finally:
        anonymous.close()
    for who in ("alice", "bob"):
        for scheme in ("light", "dark"):
            w = chrome.Watched.open(world.browser, color_scheme=scheme)
            try:
                chrome.oidc_sign_in(w.page, world.gw.base, who, f"{who}-pw")
                for path in USER_PAGES:
                    w.page.goto(world.gw.base + path)
                    found = chrome.axe(w.page)
                    assert found == [], f"{who} {scheme} {path}\n" + chrome.describe(found)
            finally:
                w.close()


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another site (localhost, not 127.0.0.1: another site to the browser)."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[tuple[str, type[_Attacker]]]:
    handler = type("Attacker", (_Attacker,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_attack_the_dashboard_refuses_to_load_in_a_frame(
    world: World, attacker: tuple[str, type[_Attacker]]
) -> None:
    site, handler = attacker
    handler.page = f'<iframe id="victim" src="{world.gw.base}/sign-in"></iframe>'.encode()
    w = world.signed_in("bob")
    try:
        w.page.goto(site)
        w.page.wait_for_timeout(500)
        framed = [f for f in w.page.frames if f != w.page.main_frame]
        assert framed, "the attacker's page has no frame"
        # Chromium shows its own error page in place of the refused frame.
        assert framed[0].url.startswith("chrome-error://"), framed[0].url
        assert "Gig'MCP" not in framed[0].content()
    finally:
        w.close()


def test_attack_a_cross_site_form_post_is_refused(
    world: World, attacker: tuple[str, type[_Attacker]]
) -> None:
    site, handler = attacker
    # The attacker's page posts the sign-out form at once, with the victim's browser.
    handler.page = (
        f'<form id="f" method="post" action="{world.gw.base}/sign-out">'
        '<input name="csrf" value="guess"></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()
    w = world.signed_in("bob")
    try:
        w.page.goto(site)
        w.page.wait_for_load_state("networkidle")
        # Still signed in: the post changed nothing.
        w.page.goto(world.gw.base + "/")
        assert w.page.get_by_role("heading", level=1).inner_text() == "Overview"
    finally:
        w.close()
