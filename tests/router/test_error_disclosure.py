"""Attack: learn the host's layout from a server that fails to start, without the jail.

The same rule as tests/sandbox/test_error_disclosure.py, where no namespaces are needed
(``--insecure-no-sandbox``): the launch fails for real (the command does not exist under
a folder named to be recognised) and the client's JSON-RPC error carries the server's
name and a reference, while ``gigmcp server logs`` carries the cause under it.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import gateway
from tests.support.launchfail import call_tool, error_ref, scratch, server_log


def test_attack_an_unjailed_launch_failure_discloses_no_host_path(tmp_path: Path) -> None:
    with scratch("gig-hostdetail-") as host, gateway(tmp_path) as gw:
        missing = host / "bin" / "ghost-mcp-server"
        gw.add_server("ghost", (str(missing),))
        gw.profile("pp", "ghost")
        gw.start()
        reply = call_tool(gw, "pp", "ghost_hello", {})
        ref = error_ref(reply)
        assert reply["error"]["message"] == f"Server 'ghost' is unavailable (ref {ref})"
        assert host.name not in repr(reply)
        logs = server_log(gw, "ghost", "pp")
        cause = next(line for line in logs.splitlines() if ref in line)
        assert str(missing) in cause, logs
