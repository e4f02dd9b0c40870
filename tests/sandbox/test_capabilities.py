"""The gateway without full root: only the capabilities docs/operations.md names (what a
container with --cap-add NET_ADMIN --cap-add SYS_ADMIN and Docker's defaults has, as far
as capabilities go), and the clear refusal when one is missing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_harness import EVERYTHING, GIGMCP, ROOT, GatewayProc, gateway
from tests.router.test_aggregation import connect, text_of

pytestmark = pytest.mark.root

NEEDED = ("net_admin", "sys_admin", "setuid", "setgid", "kill", "dac_override")
JAILED_TIME = (str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "mcp-server-time"),)


def only(*caps: str) -> tuple[str, ...]:
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    return ("setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", "--")


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    tmp: Path = tmp_path_factory.mktemp("capped")
    with gateway(tmp, jailed=True, GIG_SANDBOX_SUBNET="10.213.0.0/24") as g:
        g.wrapper = only(*NEEDED)
        g.add_server("everything", EVERYTHING)
        g.add_server("time", JAILED_TIME)
        g.profile("capped", "everything", "time")
        g.start()
        yield g


async def test_jailed_servers_work_with_only_the_named_capabilities(capped: GatewayProc) -> None:
    assert capped.proc is not None
    status = Path(f"/proc/{capped.proc.pid}/status").read_text()
    cap_eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    assert cap_eff == sum(1 << b for b in (12, 21, 7, 6, 5, 1)), hex(cap_eff)
    async with connect(capped, "capped", "auto") as c:
        assert "x-capped" in text_of(await c.call_tool("everything_echo", {"message": "x-capped"}))
        assert "UTC" in text_of(await c.call_tool("time_get_current_time", {"timezone": "UTC"}))


@pytest.mark.parametrize("missing", ["sys_admin", "net_admin", "setuid", "dac_override"])
def test_a_missing_capability_is_named_at_start_up(tmp_path: Path, missing: str) -> None:
    caps = [c for c in NEEDED if c != missing]
    out = subprocess.run(
        [*only(*caps), GIGMCP, "serve", "--listen", "127.0.0.1:1"],
        env={"PATH": "/usr/bin:/bin", "GIG_DATA_DIR": str(tmp_path / "d"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"CAP_{missing.upper()}" in out.stderr and "refusing to start" in out.stderr
    assert "Traceback" not in out.stderr
