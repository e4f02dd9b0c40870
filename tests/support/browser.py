"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright (the
PyPI package, never a browser it downloads), with what the tests watch in it.

* :func:`missing` says in one line why the browser tests cannot run here, or None.
* :func:`chromium` launches the browser headless with the flags this machine needs (no
  background networking: its closed network refuses Google's hosts), and closes it.
* :class:`Watched` is a page that records every Content-Security-Policy violation
  (the ``securitypolicyviolation`` event, installed before any page script runs) and
  every console error, so a test can fail on them.
* :func:`axe` runs axe-core (npm, tests/peers) on the page as it stands and returns the
  serious and critical violations.
* :func:`oidc_sign_in` signs in through the gateway's sign-in page and the real
  oidc-provider's login and consent forms, as a person would.

Owns driving the browser; it must never stand in for it (no HTTP client pretending to be
a browser here: that is tests/support/oidc.py's job for the HTTP-level tests).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tests" / "peers" / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]
# Recorded in the page before its own scripts run; a CSP-blocked script cannot hide it.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def missing() -> str | None:
    if not CHROMIUM.exists():
        return "Chromium is not installed (/usr/bin/chromium: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (run scripts/bootstrap)"
    if not AXE.exists():
        return "axe-core is not installed in tests/peers (run scripts/bootstrap)"
    return None


@contextlib.contextmanager
def chromium(*extra: str) -> Iterator[Any]:
    """Debian's Chromium under Playwright; ``extra``: more command-line flags (a test's
    ``--host-resolver-rules`` for names only its own DNS knows, say)."""
    from playwright.sync_api import sync_playwright

    # As root Chromium's own sandbox cannot start; the tests load only pages they serve.
    flags = [*FLAGS, *(["--no-sandbox"] if os.geteuid() == 0 else []), *extra]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A browser context (its own cookies) and a page in it, watched."""

    context: Any
    page: Any
    console_errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, **context_options: Any) -> Watched:
        context = browser.new_context(**context_options)
        context.add_init_script(WATCH_CSP)
        page = context.new_page()
        watched = cls(context, page)

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                watched.console_errors.append(msg.text)

        page.on("console", on_console)
        return watched

    def csp_violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__csp || []")
        return found + [e for e in self.console_errors if "Content Security Policy" in e]

    def close(self) -> None:
        self.context.close()


def axe(
    page: Any, tags: tuple[str, ...] = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on ``page`` (evaluated by the
    browser's debugger protocol, so the page's CSP, which forbids inline script, still
    holds for the page itself)."""
    page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", list(tags)
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(violations, indent=2)


def oidc_sign_in(page: Any, base: str, login: str, password: str, return_to: str = "/") -> None:
    """From the gateway's sign-in page through the provider's forms, back signed in."""
    page.goto(f"{base}/sign-in?return_to={return_to}")
    page.get_by_role("link", name="Sign in with your identity provider").click()
    if page.locator("form#login").count():
        page.fill("form#login input[name=login]", login)
        page.fill("form#login input[name=password]", password)
        page.click("form#login button[type=submit]")
    if page.locator("form#consent").count():
        page.click("form#consent button[type=submit]")
    page.wait_for_url(f"{base}{return_to}*")


def oidc_settings(issuer: str, callback: str, **extra: str) -> dict[str, str]:
    """The gateway's settings for the browser tests' identity provider: the client
    ``gigmcp``, and the ``groups`` claim's ``gig-admins`` as the administrators."""
    return {
        "GIG_OIDC_ISSUER": issuer,
        "GIG_OIDC_CLIENT_ID": "gigmcp",
        "GIG_OIDC_REDIRECT_URL": callback,
        "GIG_OIDC_SCOPES": "groups",
        "GIG_OIDC_ROLES_CLAIM": "groups",
        "GIG_OIDC_ADMIN_ROLE": "gig-admins",
        **extra,
    }


def unavailable() -> str | None:
    """Why the browser tests with the identity provider cannot run here, or None."""
    from tests.support.oidc import missing as oidc_missing

    return missing() or oidc_missing()
