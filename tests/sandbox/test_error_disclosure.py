"""Attack list: a token holder learns nothing about the host from a server that fails.

Each case makes a jailed launch fail for real through ``gigmcp serve`` (a command path
under a folder named to be recognised, an exhausted sandbox subnet, bubblewrap refusing
a path it was told to bind) and reads the client's whole JSON-RPC error: no host path,
no "bwrap", no "cgroup", no subnet, no traceback, only the server's name and a
correlation id; ``gigmcp server logs`` shows the cause under that same id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProc, gateway
from tests.support.launchfail import TINY, call_tool, error_ref, scratch, server_log

pytestmark = pytest.mark.root

SUBNET = "10.214.9.0/28"  # four /30 slots: the fifth instance finds none
TINY_CMD = ("/usr/bin/python3", str(TINY))
FORBIDDEN = ("bwrap", "bubblewrap", "cgroup", "Traceback", "10.214.9.", "/var/tmp", "/usr/")


@pytest.fixture(scope="module")
def host() -> Iterator[Path]:
    with scratch("gig-hostdetail-") as folder:
        yield folder


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, host: Path) -> Iterator[GatewayProc]:
    tmp: Path = tmp_path_factory.mktemp("disclosure")
    # A folder that will be locked between two launches (see the bwrap case).
    fading = host / "fading"
    fading.mkdir(mode=0o755)
    (fading / "tiny.py").write_bytes(TINY.read_bytes())
    (fading / "tiny.py").chmod(0o644)
    with gateway(tmp, jailed=True, GIG_SANDBOX_SUBNET=SUBNET, GIG_SANDBOX_POOL="0") as g:
        (host / "bin").mkdir()
        g.add_server("ghost", (str(host / "bin" / "ghost-mcp-server"),))
        for n in range(1, 6):
            g.add_server(f"tiny{n}", TINY_CMD)
        g.add_server("fading", ("/usr/bin/python3", str(fading / "tiny.py")))
        g.profile("pp", "ghost", "tiny1", "tiny2", "tiny3", "tiny4", "tiny5")
        g.profile("qq", "fading")
        g.start()
        yield g


def assert_discloses_nothing(reply: dict[str, Any], server: str, *secrets: str) -> str:
    """The error names the server and a reference, and nothing of the host."""
    error = reply.get("error")
    assert error is not None, reply
    text = repr(error)
    for word in (*FORBIDDEN, *secrets):
        assert word not in text, f"{word!r} disclosed to the client: {text}"
    assert f"'{server}'" in error["message"]
    return error_ref(reply)


def test_attack_a_missing_command_does_not_disclose_its_host_path(
    gw: GatewayProc, host: Path
) -> None:
    reply = call_tool(gw, "pp", "ghost_hello", {})
    ref = assert_discloses_nothing(reply, "ghost", str(host), host.name, "ghost-mcp-server")
    logs = server_log(gw, "ghost", "pp")
    cause = next(line for line in logs.splitlines() if ref in line)
    assert str(host / "bin" / "ghost-mcp-server") in cause, logs


def test_attack_bubblewraps_own_complaint_is_not_disclosed(gw: GatewayProc, host: Path) -> None:
    # Before the subnet case, which leaves no free slot.
    ok = call_tool(gw, "qq", "fading_hello", {"name": "x"})
    assert "result" in ok, ok
    # The folder above it locked and its definition changed (the instance restarts): the
    # launch reuses the command's cached plan, so bubblewrap itself fails to reach it.
    host.chmod(0o700)
    try:
        gw.cli("server", "limits", "fading", "--memory", "200M")
        reply = call_tool(gw, "qq", "fading_hello", {})
    finally:
        host.chmod(0o755)
    ref = assert_discloses_nothing(reply, "fading", str(host))
    logs = server_log(gw, "fading", "qq")
    assert f"bwrap: Can't find source path {host / 'fading'}" in logs, logs
    # Under the same reference, the cause in the operator's words: the folder that
    # blocks the path, and why.
    cause = next(line for line in logs.splitlines() if ref in line)
    assert f"is under {host} (mode 0700" in cause and "cannot enter" in cause, logs


def test_attack_an_exhausted_sandbox_subnet_is_not_disclosed(gw: GatewayProc) -> None:
    for n in range(1, 5):
        ok = call_tool(gw, "pp", f"tiny{n}_hello", {"name": str(n)})
        assert ok["result"]["content"][0]["text"] == f"hello {n}", ok
    reply = call_tool(gw, "pp", "tiny5_hello", {})
    ref = assert_discloses_nothing(reply, "tiny5", SUBNET)
    logs = server_log(gw, "tiny5", "pp")
    cause = next(line for line in logs.splitlines() if ref in line)
    assert SUBNET in cause and "GIG_SANDBOX_SUBNET" in cause, logs


def test_the_gateway_log_carries_the_same_reference(gw: GatewayProc, host: Path) -> None:
    # Last in this module: it stops the gateway to read everything it logged.
    ref = error_ref(call_tool(gw, "pp", "ghost_hello", {}))
    out = gw.stop()
    line = next((line for line in out.splitlines() if ref in line), None)
    assert line is not None, out[-3000:]
    assert str(host / "bin" / "ghost-mcp-server") in line
