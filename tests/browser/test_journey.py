"""One full journey through the dashboard, every part real: a person signs in through a
real OpenID provider (oidc-provider, Node 22) in a real browser (Debian's Chromium,
Playwright), installs a catalog server from a signed index after reading its consent
(the image pulled from a real docker-registry on loopback and run in the jail), builds
a profile, switches a tool off, mints a token and copies the Claude Code command; the
official Python SDK client, with the token from that command, lists the tools (the
switched-off one absent) and calls one; the call then shows in the audit page and in
the overview's chart.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import browser as chrome
from tests.support import oci_images as images
from tests.support.gateway import GatewayProc, free_port, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.oci_registry import binary_available, start_registry, stop_registry
from tests.support.oidc import Account, Client, OidcProvider, start_provider
from tests.support.shecho import manifest, shecho_layer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(chrome.unavailable() is not None, reason=chrome.unavailable() or ""),
]

ACCOUNTS = [Account("ada", "ada-pw", "ada@example.test", True, "Ada", groups=["gig-admins"])]
COMMAND = re.compile(
    r"claude mcp add --transport http (\S+) (\S+) --header \"Authorization: Bearer (gig_pt_[\w-]+)\""
)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProc, OidcProvider, Any]]:
    if not binary_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    tmp: Path = tmp_path_factory.mktemp("journey")
    registry = start_registry()
    # Not under pytest's tmp dir: the jails' uids must reach the installed image.
    packages = Path(tempfile.mkdtemp(prefix="gigpkg-"))
    os.chmod(packages, 0o755)
    pusher = images.Pusher(registry.url)
    port = free_port()
    callback = f"http://127.0.0.1:{port}/api/auth/callback"
    try:
        digest = pusher.push(
            "gig/shecho",
            images.index([images.image([shecho_layer("journey")]), images.foreign_stub()]),
        )
        root = tmp / "registry"
        (root / "index").mkdir(parents=True)
        with (
            start_provider(tmp, clients=[Client("gigmcp", [callback])], accounts=ACCOUNTS) as idp,
            gateway(
                tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.20.0/24", GIG_SANDBOX_POOL="0",
                GIG_PACKAGES_DIR=str(packages), GIG_OCI_PLAIN_HTTP=registry.host,
                GIG_REGISTRY_INDEX_URL=f"file://{root / 'index' / 'index.json'}",
            ) as g,
            chrome.chromium() as browser,
        ):  # fmt: skip
            pub = g.cli("registry", "keygen", "--out", str(root / "key")).stdout.strip()
            g.env["GIG_REGISTRY_PUBKEY"] = pub
            # Both tools on by default: the person switches one off.
            doc = manifest("shecho", "1.0.0", f"{registry.host}/gig/shecho", digest,
                           tools=[{"name": "hello", "default": True},
                                  {"name": "wipe", "default": True}])  # fmt: skip
            folder = root / "manifests" / "shecho"
            folder.mkdir(parents=True)
            (folder / "1.0.0.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            idx = root / "index" / "index.json"
            g.cli("registry", "build-index", str(root / "manifests"), "--out", str(idx),
                  "--generated", "2026-12-01T00:00:00Z")  # fmt: skip
            g.cli("registry", "sign", str(idx), "--key", str(root / "key"))
            g.start(
                port=port,
                **chrome.oidc_settings(idp.issuer, callback),
            )
            yield g, idp, browser
    finally:
        pusher.close()
        stop_registry(registry)
        shutil.rmtree(packages, ignore_errors=True)


def sdk_session(gw: GatewayProc, slug: str, token: str) -> tuple[set[str], str]:
    """The official SDK client with the token a person pasted: its tools and one call.
    In a thread of its own: the browser's driver owns this thread's event loop."""
    out: dict[str, Any] = {}

    async def run() -> None:
        gw.tokens[slug] = token
        async with connect(gw, slug, "auto") as c:
            out["names"] = {t.name for t in (await c.list_tools()).tools}
            out["text"] = text_of(await c.call_tool("shecho_hello", {}))

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # carried to the test's thread
            out["error"] = exc

    worker = threading.Thread(target=main)
    worker.start()
    worker.join(120)
    if "error" in out:
        raise out["error"]
    return out["names"], out["text"]


def test_sign_in_install_build_a_profile_mint_and_call_then_see_it(stack: Any) -> None:
    gw, _, browser = stack
    w = chrome.Watched.open(browser, permissions=["clipboard-read", "clipboard-write"])
    page = w.page
    try:
        chrome.oidc_sign_in(page, gw.base, "ada", "ada-pw")
        # The catalog: read the consent, then act on it.
        page.goto(gw.base + "/catalog")
        page.get_by_role("link", name="Shell echo").click()
        page.get_by_role("link", name=re.compile(r"^Install shecho")).click()
        consent = page.locator("pre.catalog-consent").inner_text()
        assert "shecho@1.0.0" in consent and "api.example.test" in consent
        page.get_by_role("button", name="I agree: install shecho").click()
        page.wait_for_load_state("networkidle")
        assert "installed" in page.locator("main").inner_text().lower()
        # A profile with the server, one tool switched off.
        page.goto(gw.base + "/profiles")
        page.get_by_label("Name", exact=True).fill("journey")
        page.get_by_role("button", name="Create profile").click()
        page.wait_for_url(f"{gw.base}/profiles/journey*")
        page.get_by_label("Server", exact=True).select_option("shecho")
        page.get_by_role("button", name="Add server").click()
        page.wait_for_load_state("networkidle")
        page.get_by_role("button", name="Turn off wipe").click()
        page.wait_for_load_state("networkidle")
        # A token, and the Claude Code command copied as a person would.
        page.locator("#mint-name").fill("claude")
        page.get_by_role("button", name="Mint token").click()
        page.wait_for_load_state("networkidle")
        page.locator("button[data-copy='cfg-claude_code']").click()
        command = page.evaluate("navigator.clipboard.readText()")
        found = COMMAND.search(command)
        assert found, command
        url, token = found.group(2), found.group(3)
        assert url == gw.url("journey")
        # The official SDK client, with what was pasted.
        names, text = sdk_session(gw, "journey", token)
        assert "shecho_hello" in names and "shecho_wipe" not in names
        assert text == "hello from journey"
        # The call in the audit page (written in batches: wait for it) and the overview.
        for _ in range(40):
            page.goto(gw.base + "/audit?kind=tools%2Fcall")
            rows = page.locator("main table")
            if rows.count() and "shecho" in rows.inner_text():
                break
            page.wait_for_timeout(250)
        table = page.locator("main table").inner_text()
        assert "tools/call" in table and "hello" in table
        page.goto(gw.base + "/")
        servers = page.locator(
            "section", has=page.get_by_role("heading", name="Calls per server, week by week")
        )
        assert "shecho" in servers.inner_text()
        assert page.locator("rect.bar").count() >= 1
        assert w.csp_violations() == []
    finally:
        w.close()
