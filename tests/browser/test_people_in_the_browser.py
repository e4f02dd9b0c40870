"""Three people in a real browser (Debian's Chromium driven by Playwright) on a real
`gigmcp serve` with a real OpenID provider: Bob builds a profile and mints a token,
Carol looks for what is Bob's, Alice (an administrator) views the gateway as Bob.

Attacks, each a test that fails if its guard is removed:
- a minted token stays on the one page that showed it: not in any later page, not
  after going back in history, not in browser storage or cookies;
- a second user never sees the first user's profiles, tokens or audit rows;
- an impersonating administrator cannot change anything, even by submitting a form
  whose button the page disabled;
and every page the three of them open passes axe (no serious or critical violation)
in light and dark, with no Content-Security-Policy violation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import browser as chrome
from tests.support.gateway import TIME, GatewayProc, free_port, gateway
from tests.support.oidc import Account, Client, start_provider

pytestmark = pytest.mark.skipif(chrome.unavailable() is not None, reason=chrome.unavailable() or "")

ACCOUNTS = [
    Account("alice", "alice-pw", "alice@example.test", True, "Alice", groups=["gig-admins"]),
    Account("bob", "bob-pw", "bob@example.test", True, "Bob"),
    Account("carol", "carol-pw", "carol@example.test", True, "Carol"),
]
TOKEN = re.compile(r"gig_pt_[A-Za-z0-9_-]{20,}")


@dataclass
class World:
    gw: GatewayProc
    browser: Any
    # Filled by the first test, read by the later ones (module order).
    token: str = ""

    def person(self, who: str, scheme: str = "light") -> chrome.Watched:
        w = chrome.Watched.open(
            self.browser,
            color_scheme=scheme,
            permissions=["clipboard-read", "clipboard-write"],
        )
        chrome.oidc_sign_in(w.page, self.gw.base, who, f"{who}-pw")
        return w

    def go(self, w: chrome.Watched, path: str) -> Any:
        response = w.page.goto(self.gw.base + path)
        w.page.wait_for_load_state("networkidle")
        return response


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("people")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/api/auth/callback"
    client = Client("gigmcp", [callback])
    with (
        start_provider(tmp, clients=[client], accounts=ACCOUNTS) as idp,
        gateway(tmp) as g,
        chrome.chromium() as browser,
    ):
        g.add_server("time", TIME)  # the local administrator's: the shared catalog
        g.start(
            port=port,
            **chrome.oidc_settings(idp.issuer, callback, GIG_IMPERSONATION="on"),
        )
        yield World(g, browser)


def page_is_clean(w: chrome.Watched, where: str) -> None:
    assert w.csp_violations() == [], f"{where}: {w.csp_violations()}"
    found = chrome.axe(w.page)
    assert found == [], f"{where}\n" + chrome.describe(found)


def test_bob_builds_a_profile_and_mints_a_token_shown_once(world: World) -> None:
    w = world.person("bob")
    try:
        world.go(w, "/profiles")
        page_is_clean(w, "bob /profiles")
        w.page.get_by_label("Name", exact=True).fill("bobs-laptop")
        w.page.get_by_role("button", name="Create profile").click()
        w.page.wait_for_url(f"{world.gw.base}/profiles/bobs-laptop*")
        w.page.get_by_label("Server", exact=True).select_option("time")
        w.page.get_by_role("button", name="Add server").click()
        w.page.wait_for_load_state("networkidle")
        assert "time" in w.page.locator("main").inner_text()
        page_is_clean(w, "bob /profiles/bobs-laptop")
        w.page.locator("#mint-name").fill("laptop")
        w.page.get_by_role("button", name="Mint token").click()
        w.page.wait_for_load_state("networkidle")
        shown = w.page.locator("#minted-token").inner_text().strip()
        assert TOKEN.fullmatch(shown), shown
        world.token = shown
        page_is_clean(w, "bob token page")
        # The Claude Code command, copied as a person would, carries the token.
        w.page.locator("button[data-copy='cfg-claude_code']").click()
        copied = w.page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("claude mcp add") and shown in copied
        # Back in history: the mint was a POST answered with no-store, so the browser
        # has nothing to show again.
        w.page.go_back()
        w.page.wait_for_load_state("networkidle")
        assert shown not in w.page.content()
        for path in ("/profiles/bobs-laptop", "/profiles", "/", "/audit", "/servers"):
            world.go(w, path)
            assert shown not in w.page.content(), f"the token is on {path}"
        storage = w.page.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
        )
        assert shown not in storage
        assert all(shown not in c["value"] for c in w.context.cookies())
    finally:
        w.close()


def test_carol_never_sees_what_is_bobs(world: World) -> None:
    assert world.token, "runs after Bob's test"
    w = world.person("carol")
    try:
        world.go(w, "/profiles")
        assert "bobs-laptop" not in w.page.content()
        r = world.go(w, "/profiles/bobs-laptop")
        assert r.status == 404
        hers = w.page.locator("main").inner_text().replace("bobs-laptop", "X")
        # Exactly what a profile that does not exist gives: nothing confirms it is there.
        world.go(w, "/profiles/no-such-one")
        assert w.page.locator("main").inner_text().replace("no-such-one", "X") == hers
        world.go(w, "/audit")
        assert "bobs-laptop" not in w.page.content() and "Bob" not in w.page.content()
        export = w.page.request.get(world.gw.base + "/audit/export.jsonl")
        assert export.ok and "bobs-laptop" not in export.text()
        for path in ("/", "/servers", "/credentials"):
            world.go(w, path)
            assert "bobs-laptop" not in w.page.content(), path
            assert world.token not in w.page.content()
    finally:
        w.close()


def test_an_administrator_viewing_as_bob_changes_nothing(world: World) -> None:
    w = world.person("alice")
    try:
        world.go(w, "/users")
        page_is_clean(w, "alice /users")
        row = w.page.locator("tr", has_text="bob@example.test")
        row.get_by_role("button", name="View as").click()
        w.page.wait_for_url(f"{world.gw.base}/")
        banner = w.page.get_by_role("alert")
        assert "viewing the gateway as Bob" in banner.inner_text()
        page_is_clean(w, "alice as bob /")
        world.go(w, "/profiles/bobs-laptop")
        assert "bobs-laptop" in w.page.locator("h1").inner_text()
        # The page disables its buttons; a form submitted anyway is refused.
        assert w.page.get_by_role("button", name="Mint token").is_disabled()
        with w.page.expect_navigation():
            w.page.evaluate("document.querySelector('form[action$=\"/tokens\"]').submit()")
        assert "Not allowed" in w.page.locator("h1").inner_text()
        world.go(w, "/profiles")
        with w.page.expect_navigation():
            w.page.evaluate(
                "const f = document.querySelector('form[action=\"/profiles\"]');"
                "f.querySelector('[name=slug]').value = 'sneaky'; f.submit()"
            )
        assert "Not allowed" in w.page.locator("h1").inner_text()
        world.go(w, "/profiles")
        assert "sneaky" not in w.page.locator("main").inner_text()
        # Nothing was made: Bob's profile has one token, and no unnamed profile exists.
        world.go(w, "/profiles/bobs-laptop")
        assert w.page.locator("main").inner_text().count("laptop") >= 1
        w.page.get_by_role("button", name="Stop viewing as this user").click()
        w.page.wait_for_url(f"{world.gw.base}/")
        assert w.page.get_by_role("alert").count() == 0
    finally:
        w.close()


def test_a_profile_is_made_and_a_token_minted_with_the_keyboard_alone(world: World) -> None:
    w = world.person("carol")
    page = w.page
    try:
        world.go(w, "/profiles")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the content"

        def tab_to(selector: str) -> None:
            for _ in range(60):
                if page.evaluate(f"document.activeElement.matches({selector!r})"):
                    return
                page.keyboard.press("Tab")
            raise AssertionError(f"Tab never reached {selector}")

        tab_to("#slug")
        page.keyboard.type("carols")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{world.gw.base}/profiles/carols*")
        tab_to("#mint-name")
        page.keyboard.type("keyboard")
        page.keyboard.press("Enter")
        page.wait_for_load_state("networkidle")
        assert TOKEN.fullmatch(page.locator("#minted-token").inner_text().strip())
        # The focus is visible where it lands (an outline, from the stylesheet).
        tab_to("button[data-copy]")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
    finally:
        w.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_axe_and_the_csp(world: World, scheme: str) -> None:
    pages = {
        "bob": ["/", "/catalog", "/servers", "/servers/time", "/profiles",
                "/profiles/bobs-laptop", "/credentials", "/audit"],
        "alice": ["/", "/users", "/audit", "/servers"],
    }  # fmt: skip
    for who, paths in pages.items():
        w = world.person(who, scheme)
        try:
            for path in paths:
                world.go(w, path)
                page_is_clean(w, f"{who} {scheme} {path}")
        finally:
            w.close()
