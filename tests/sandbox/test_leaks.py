"""What a jailed gateway leaves behind when it is killed with SIGKILL, and when it stops
cleanly: no process, namespace, veth, cgroup or firewall element. A restart after the
kill reconciles what the dead one could not clean up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.gateway import EVERYTHING, MEMORY, gateway
from tests.support.host_leftovers import gigmcp_cgroups, sandbox_links, table_elements
from tests.support.mcp_client import connect
from tests.support.sandbox_network import SUBNET

pytestmark = pytest.mark.root


@pytest.mark.parametrize("mode", ["root", "userns"])
def test_a_killed_gateway_leaves_nothing_and_a_restart_reconciles(
    tmp_path: Path, mode: str
) -> None:
    # Userns mode adds a holder process per namespace: it too must go with the gateway.
    with gateway(
        tmp_path,
        jailed=True,
        GIG_SANDBOX_SUBNET=SUBNET,
        GIG_SANDBOX_POOL="2",
        GIG_SANDBOX_MODE=mode,
    ) as g:
        g.add_server("everything", EVERYTHING)
        g.add_server("memory", MEMORY, "--env", "MEMORY_FILE_PATH=/home/sandbox/m.jsonl")
        g.profile("pp", "everything", "memory")
        links_before = sandbox_links()
        for cycle in range(2):
            g.start()

            async def use() -> None:
                async with connect(g, "pp", "auto") as c:
                    await c.call_tool("everything_echo", {"message": "x"})
                    await c.call_tool("memory_read_graph", {})

            asyncio.run(use())
            kids = g.descendants()
            assert len(kids) >= 2
            assert sandbox_links() - links_before, "the instances have their links"
            assert g.proc is not None
            if cycle == 0:
                os.kill(g.proc.pid, signal.SIGKILL)  # no clean-up code runs
                g.proc.wait()
            else:
                g.stop()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{k}") for k in kids):
                time.sleep(0.05)
            alive = [k for k in kids if os.path.exists(f"/proc/{k}")]
            assert alive == [], f"processes outlived the gateway: {alive}"
            # Namespaces die with their last process, and the veths with them.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and sandbox_links() - links_before:
                time.sleep(0.05)
            assert sandbox_links() - links_before == set()
        # After the clean stop: no cgroup, no rule element left (the restart after the
        # SIGKILL reconciled the first run's leftovers).
        assert gigmcp_cgroups() == []
        assert table_elements() == ""


def _namespaces(kind: str) -> set[str]:
    """Namespaces some live process is in. Zombies are left out: reaping an orphan is the
    host init's job, which on these test machines does it lazily."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("mode", ["root", "userns"])
async def test_many_spawn_kill_cycles_leave_nothing_behind(mode: str) -> None:
    """A few dozen in the default suite; GIG_SLOW_TESTS=1 runs a thousand."""
    from gigmcp.core.instances import InstanceKey
    from gigmcp.core.launch import LaunchSpec
    from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

    jail_inits: set[int] = set()
    cycles = 1000 if os.environ.get("GIG_SLOW_TESTS") == "1" else 30
    before = {
        "fds": set(os.listdir("/proc/self/fd")),
        "links": await asyncio.to_thread(sandbox_links),
        "net": _namespaces("net"),
        "pid": _namespaces("pid"),
        "user": _namespaces("user"),
        "cgroups": gigmcp_cgroups(),
    }
    sandbox = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=2, mode=mode))
    await sandbox.start()
    try:
        for i in range(cycles):
            proc = await sandbox.launch(LaunchSpec(InstanceKey(i % 3, "cycle"), ("/bin/cat",)))
            proc.stdin.write(b"ping\n")
            await proc.stdin.drain()
            assert await proc.stdout.readline() == b"ping\n"
            jail_inits.add(proc.jail_pid)  # type: ignore[attr-defined]
            if i % 2:
                proc.terminate()
            else:
                proc.kill()
            await proc.wait()
            await proc.cleanup()
        assert len(sandbox.identities) == 0
    finally:
        await sandbox.aclose()
    await asyncio.sleep(0.2)
    assert await asyncio.to_thread(sandbox_links) == before["links"]
    assert gigmcp_cgroups() == before["cgroups"] == []
    assert _namespaces("net") <= before["net"]
    assert _namespaces("pid") <= before["pid"]
    assert _namespaces("user") <= before["user"]
    # Our jails end init-first, so the monitor reaps the init: no orphan is left to the
    # host's pid 1 (where a container's init might never reap it).
    assert not _orphaned_jail_zombies() & jail_inits
    assert table_elements() == ""
    extra = set(os.listdir("/proc/self/fd")) - before["fds"] - {"3"}
    targets = {}
    for fd in extra:
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # listdir's own descriptor, gone already
    assert targets == {}, targets


def _orphaned_jail_zombies() -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            state, ppid = tail.split()[:2]
            if state == "Z" and ppid == "1" and head.endswith("(bwrap"):
                found.add(int(pid))
    return found


async def test_closing_while_the_pool_refills_leaks_nothing() -> None:
    """Shutdown can cut a zygote's construction short at any await: its pipes, process,
    cgroup and namespace must go all the same."""
    from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

    fds = set(os.listdir("/proc/self/fd"))
    for delay in (0.0, 0.002, 0.005, 0.01, 0.02, 0.05):
        sandbox = SandboxLauncher(SandboxConfig(subnet=SUBNET, pool_size=4))
        await sandbox.start()
        await asyncio.sleep(delay)
        await sandbox.aclose()
    await asyncio.sleep(0.1)
    leaked = {}
    for fd in set(os.listdir("/proc/self/fd")) - fds:
        try:
            leaked[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # listdir's own descriptor
    assert leaked == {}
    assert gigmcp_cgroups() == []
    assert await asyncio.to_thread(sandbox_links) == set()
