"""``python -m tests.support.screenshots``: a screenshot of every dashboard page, in light
and dark, into docs/screenshots/ (``scripts/screenshots`` runs it).

Builds a demo gateway in a temporary folder with realistic data: servers (the real
``mcp-server-time`` among them, called through the gateway so its instance runs), a
signed catalog of real entries from ../shared/registry-catalog, profiles with tokens,
a few people, and 26 weeks of tool calls and egress written through the gateway's own
writers (so the overview's counters are the real ones). Then it signs in with the same
browser set-up as the tests (Debian's Chromium, Playwright; the one-time link of the
embedded default) and saves each page. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gigmcp.control import users
from gigmcp.control.users import Identity, RolePolicy
from gigmcp.core import pins
from gigmcp.core.views import AuditEvent
from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.store.catalog import StoreCatalog
from tests.support import browser as chrome
from tests.support.gateway import TIME, GatewayProc, gateway
from tests.support.mcp_client import connect

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
CATALOG = ROOT.parent / "shared" / "registry-catalog" / "manifests"
ENTRIES = ("ably", "alchemy", "discord", "github", "slack", "notion", "linear", "sentry")
# name: (tools, how busy)
SERVERS = {
    "github": (["search_code", "list_issues", "create_issue", "get_pull_request"], 9),
    "slack": (["post_message", "list_channels", "search_messages"], 6),
    "postgres": (["query", "list_tables", "describe_table"], 4),
    "notion": (["search", "get_page", "append_block"], 3),
    "sentry": (["list_issues", "get_event"], 2),
}
PEOPLE = [("maria", "María García"), ("chen", "Chen Wei"), ("sam", "Sam Okafor")]
DESCRIPTIONS = {
    "search_code": "Search code across the repositories the token can read",
    "list_issues": "List issues, newest first, with their labels and assignees",
    "create_issue": "Open an issue with a title, a body and labels",
    "get_pull_request": "Read a pull request: its diff summary, reviews and checks",
    "post_message": "Post a message to a channel or a thread",
    "list_channels": "List the channels the app was added to",
    "search_messages": "Search messages the app can read",
    "query": "Run a read-only SQL query (a statement timeout applies)",
    "list_tables": "List the tables of a schema",
    "describe_table": "Describe a table's columns, keys and indexes",
    "search": "Search pages and databases shared with the integration",
    "get_page": "Read a page as Markdown",
    "append_block": "Append blocks to a page",
    "get_event": "Read an event with its stack trace and breadcrumbs",
}


def seed(g: GatewayProc) -> None:
    url = f"sqlite:///{g.data_dir / 'gigmcp.db'}"
    catalog = StoreCatalog(url)
    rng = random.Random(42)
    try:
        policy = RolePolicy(admin_subjects=frozenset())
        owners = [
            users.sign_in(catalog.engine, Identity("https://idp.example.com", sub,
                                                   f"{sub}@example.com", True, name), policy)
            for sub, name in PEOPLE
        ]  # fmt: skip
        admin_id = 1  # the local administrator, made when the store was first opened
        now = datetime.now(UTC)

        async def write() -> None:
            egress = EgressAudit(catalog.engine)
            for day in range(182):
                at = now - timedelta(days=day)
                weekday = at.weekday() < 5
                for server, (tools, weight) in SERVERS.items():
                    calls = rng.randint(0, weight * (6 if weekday else 1))
                    for _ in range(calls):
                        user = rng.choice([admin_id, *(o.user_id for o in owners)])
                        outcome = "ok" if rng.random() > 0.04 else "error"
                        catalog.record(
                            AuditEvent("tools/call", outcome, user, None, server,
                                       rng.choice(tools), rng.uniform(20, 900), 120,
                                       at=at - timedelta(minutes=rng.randint(0, 600)))
                        )  # fmt: skip
                        if rng.random() < 0.6:
                            egress.record(
                                EgressEvent("10.213.0.2", "allowed" if rng.random() > 0.03
                                            else "denied", "policy", owner_id=user,
                                            server=server, at=at)
                            )  # fmt: skip
                await catalog.flush()
            await egress.flush()

        asyncio.run(write())
        # The tools the demo servers would list, pinned through the catalog's own writer
        # (these servers never run here: their commands are placeholders).
        with catalog.engine.connect() as conn:
            ids = dict(conn.exec_driver_sql("SELECT name, id FROM servers").all())
        for server, (tools, _) in SERVERS.items():
            for tool in tools:
                listed = {
                    "name": tool,
                    "description": DESCRIPTIONS[tool],
                    "inputSchema": {"type": "object", "properties": {}},
                }
                catalog._queue_pin(
                    pins.PinChange(ids[server], server, tool, pins.fingerprint(listed),
                                   pins.snapshot(listed), False)
                )  # fmt: skip
        asyncio.run(catalog.flush())
    finally:
        catalog.engine.dispose()


def build_catalog(g: GatewayProc, tmp: Path) -> None:
    root = tmp / "registry"
    (root / "manifests").mkdir(parents=True)
    (root / "index").mkdir()
    for name in ENTRIES:
        if (CATALOG / name).is_dir():
            target = root / "manifests" / name
            target.mkdir()
            for f in (CATALOG / name).iterdir():
                if f.is_file():
                    (target / f.name).write_bytes(f.read_bytes())
    idx = root / "index" / "index.json"
    pub = g.cli("registry", "keygen", "--out", str(root / "key")).stdout.strip()
    g.cli("registry", "build-index", str(root / "manifests"), "--out", str(idx))
    g.cli("registry", "sign", str(idx), "--key", str(root / "key"))
    g.env["GIG_REGISTRY_INDEX_URL"] = f"file://{idx}"
    g.env["GIG_REGISTRY_PUBKEY"] = pub


MAX_HEIGHT = 1600


def shoot(page: object, path: Path) -> None:
    """The whole page, cut at a height that keeps the committed files small."""
    height = min(MAX_HEIGHT, page.evaluate("document.body.scrollHeight"))  # type: ignore[attr-defined]
    clip = {"x": 0, "y": 0, "width": 1280, "height": height}
    page.screenshot(path=str(path), full_page=True, clip=clip)  # type: ignore[attr-defined]


def main() -> None:
    reason = chrome.missing()
    if reason:
        sys.exit(f"screenshots: {reason}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with gateway(tmp) as g:
            for name in SERVERS:
                g.add_server(name, TIME)
            g.add_server("time", TIME)
            g.profile("work", "github", "slack", "sentry")
            g.profile("research", "notion", "postgres")
            g.profile("clock", "time")
            if CATALOG.is_dir():
                build_catalog(g, tmp)
            seed(g)
            g.start()

            async def call() -> None:
                async with connect(g, "clock", "auto") as c:
                    await c.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})

            asyncio.run(call())
            pages = {
                "overview": "/",
                "catalog": "/catalog",
                "catalog-entry": "/catalog/slack",
                "servers": "/servers",
                "server": "/servers/time",
                "profiles": "/profiles",
                "profile": "/profiles/work",
                "credentials": "/credentials",
                "audit": "/audit",
                "users": "/users",
            }
            with chrome.chromium() as browser:
                for scheme in ("light", "dark"):
                    w = chrome.Watched.open(
                        browser, color_scheme=scheme, viewport={"width": 1280, "height": 900}
                    )
                    try:
                        w.page.goto(g.cli("login-link").stdout.strip())
                        for name, path in pages.items():
                            w.page.goto(g.base + path)
                            w.page.wait_for_load_state("networkidle")
                            shoot(w.page, OUT / f"{name}-{scheme}.png")
                        w.page.goto(g.base + "/sign-in")
                        # Signed in, the sign-in page sends the browser on: sign out first.
                        w.context.clear_cookies()
                        w.page.goto(g.base + "/sign-in")
                        w.page.screenshot(path=str(OUT / f"sign-in-{scheme}.png"))
                    finally:
                        w.close()
    print(f"screenshots: {len(list(OUT.glob('*.png')))} files in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
