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

from tests.gateway_harness import EVERYTHING, MEMORY, gateway
from tests.router.test_aggregation import connect
from tests.sandbox.test_gateway_jailed import (
    SUBNET,
    _gigmcp_cgroups,
    _sandbox_links,
    _table_elements,
)

pytestmark = pytest.mark.root


def test_a_killed_gateway_leaves_nothing_and_a_restart_reconciles(tmp_path: Path) -> None:
    with gateway(tmp_path, jailed=True, GIG_SANDBOX_SUBNET=SUBNET, GIG_SANDBOX_POOL="2") as g:
        g.add_server("everything", EVERYTHING)
        g.add_server("memory", MEMORY, "--env", "MEMORY_FILE_PATH=/home/sandbox/m.jsonl")
        g.profile("pp", "everything", "memory")
        links_before = _sandbox_links()
        for cycle in range(2):
            g.start()

            async def use() -> None:
                async with connect(g, "pp", "auto") as c:
                    await c.call_tool("everything_echo", {"message": "x"})
                    await c.call_tool("memory_read_graph", {})

            asyncio.run(use())
            kids = g.descendants()
            assert len(kids) >= 2
            assert _sandbox_links() - links_before, "the instances have their links"
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
            while time.monotonic() < deadline and _sandbox_links() - links_before:
                time.sleep(0.05)
            assert _sandbox_links() - links_before == set()
        # After the clean stop: no cgroup, no rule element left (the restart after the
        # SIGKILL reconciled the first run's leftovers).
        assert _gigmcp_cgroups() == []
        assert _table_elements() == ""
