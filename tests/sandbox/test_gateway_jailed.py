"""The real MCP servers of the gateway's tests, each in its own jail, end to end through
`gigmcp serve` (sandbox on, the default) with the official Python SDK client in both
protocol eras and the TypeScript SDK clients; and an instance that breaks its limit.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from gigmcp.sandbox.jail import HOST_UID_BASE
from tests.support.gateway import EVERYTHING, MEMORY, NODE, ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

JAILED_PY = str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python")
JAILED_TIME = (str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "mcp-server-time"),)
JAILED_CRASHY = (JAILED_PY, str(ROOT / "tests" / "servers" / "crashy.py"))
SUBNET = "10.213.0.0/24"
CLIENTS = ROOT / "tests" / "clients"


@pytest.fixture(scope="module")
def jailed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    tmp: Path = tmp_path_factory.mktemp("jailed")
    with gateway(tmp, jailed=True, GIG_SANDBOX_SUBNET=SUBNET, GIG_SANDBOX_POOL="1") as g:
        g.add_server("everything", EVERYTHING)
        g.add_server("memory", MEMORY, "--env", "MEMORY_FILE_PATH=/home/sandbox/memory.jsonl")
        g.add_server("time", JAILED_TIME)
        g.add_server("crashy", JAILED_CRASHY, "--memory", "64M")
        g.profile("alpha", "everything", "memory", "time")
        g.profile("hogs", "crashy", "everything")
        g.start()
        yield g


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_real_servers_work_end_to_end_inside_jails(jailed: GatewayProc, mode: str) -> None:
    async with connect(jailed, "alpha", mode) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"everything_echo", "memory_read_graph", "time_get_current_time"} <= names
        echo = await c.call_tool("everything_echo", {"message": f"jailed {mode}"})
        assert f"jailed {mode}" in text_of(echo)
        now = await c.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        assert "Europe/Paris" in text_of(now)
        await c.call_tool(
            "memory_create_entities",
            {"entities": [{"name": f"jailed-{mode}", "entityType": "t", "observations": ["o"]}]},
        )
        graph = await c.call_tool("memory_read_graph", {})
        assert f"jailed-{mode}" in text_of(graph)


async def test_each_instance_runs_as_its_own_unprivileged_uid_in_its_own_namespaces(
    jailed: GatewayProc,
) -> None:
    async with connect(jailed, "alpha", "auto") as c:
        await c.call_tool("everything_echo", {"message": "warm"})
        await c.call_tool("time_get_current_time", {"timezone": "UTC"})
    own_netns = os.readlink("/proc/self/ns/net")
    by_netns: dict[str, list[tuple[bytes, list[str]]]] = {}
    for pid in jailed.descendants():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
            netns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if netns == own_netns:
            continue  # the gateway's own helpers
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        by_netns.setdefault(netns, []).append((cmd, uids))
    # Every process of an instance (bwrap's monitor, the jail's init, the server), not
    # only the server: one uid per instance, real, effective, saved and fs alike, in the
    # instance range, never root and never the host's nobody.
    servers = {}
    for netns, procs in by_netns.items():
        uids = {u for _cmd, four in procs for u in four}
        assert len(uids) == 1, (netns, procs)
        uid = int(uids.pop())
        assert uid >= HOST_UID_BASE, procs
        for name in (b"server-everything", b"mcp-server-time"):
            if any(name in cmd for cmd, _u in procs):
                # (A pooled zygote, waiting for its server, is bwrap alone.)
                assert len(procs) >= 3, f"expected monitor, init and server: {procs}"
                servers[name] = (netns, uid)
    assert set(servers) == {b"server-everything", b"mcp-server-time"}
    everything, time_server = servers[b"server-everything"], servers[b"mcp-server-time"]
    assert everything[0] != time_server[0], "one network namespace per instance"
    assert everything[1] != time_server[1], "one host uid per instance"


async def test_an_instance_that_breaks_its_memory_limit_dies_alone_and_says_why(
    jailed: GatewayProc,
) -> None:
    async with connect(jailed, "hogs", "auto") as c:
        assert text_of(await c.call_tool("crashy_echo", {"text": "before"})) == "before"
        # The server dies mid-call: a JSON-RPC error at once, never a hang.
        with pytest.raises(MCPError, match="exited"):
            await c.call_tool("crashy_hog", {})
        # The other server of the profile, and the gateway, carry on.
        echo = await c.call_tool("everything_echo", {"message": "still here"})
        assert "still here" in text_of(echo)
    # The client hears of the death when the server's stdout closes; the supervisor
    # writes why once the process is reaped and its cgroup read, a moment later.
    needle = "memory limit (64 MiB) exceeded: oom-killed"
    logged = jailed.wait_for_server_log("crashy", "hogs", needle)
    assert logged, jailed.server_logs("crashy", "hogs")


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_typescript_sdk_clients_use_jailed_servers(jailed: GatewayProc, flavour: str) -> None:
    out = subprocess.run(
        [
            NODE,
            str(CLIENTS / "ts_client.mjs"),
            flavour,
            jailed.url("alpha"),
            jailed.tokens["alpha"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "everything_echo" in seen["tools"] and "time_get_current_time" in seen["tools"]
    assert f"ts-{flavour}" in seen["echo"]
    assert seen["readOk"]
