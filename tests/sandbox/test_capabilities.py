"""The gateway without full root, in both modes docs/operations.md names: root mode with
exactly six capabilities (a container with --cap-add NET_ADMIN --cap-add SYS_ADMIN and
Docker's defaults, as far as capabilities go), userns mode with exactly five (the same
without SYS_ADMIN: --cap-add NET_ADMIN only); and the clear refusal when one is missing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import EVERYTHING, GIGMCP, ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

NEEDED = ("net_admin", "sys_admin", "setuid", "setgid", "kill", "dac_override")
USERNS_NEEDED = ("net_admin", "setuid", "setgid", "kill", "dac_override")
JAILED_TIME = (str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "mcp-server-time"),)


def only(*caps: str) -> tuple[str, ...]:
    bounding = ",".join(["-all", *(f"+{c}" for c in caps)])
    return ("setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", "--")


CAPS = {"root": NEEDED, "userns": USERNS_NEEDED}
BITS = {"root": (12, 21, 7, 6, 5, 1), "userns": (12, 7, 6, 5, 1)}


@pytest.fixture(scope="module", params=["root", "userns"])
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, GatewayProc]]:
    mode: str = request.param
    tmp: Path = tmp_path_factory.mktemp(f"capped-{mode}")
    # "auto" on purpose: without SYS_ADMIN the gateway must pick userns mode by itself.
    with gateway(tmp, jailed=True, GIG_SANDBOX_SUBNET="10.213.0.0/24") as g:
        g.wrapper = only(*CAPS[mode])
        g.add_server("everything", EVERYTHING)
        g.add_server("time", JAILED_TIME)
        g.profile("capped", "everything", "time")
        g.start()
        yield mode, g


async def test_jailed_servers_work_with_only_the_named_capabilities(
    capped: tuple[str, GatewayProc],
) -> None:
    mode, gw = capped
    assert gw.proc is not None
    status = Path(f"/proc/{gw.proc.pid}/status").read_text()
    cap_eff = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
    assert cap_eff == sum(1 << b for b in BITS[mode]), hex(cap_eff)
    async with connect(gw, "capped", "auto") as c:
        assert "x-capped" in text_of(await c.call_tool("everything_echo", {"message": "x-capped"}))
        assert "UTC" in text_of(await c.call_tool("time_get_current_time", {"timezone": "UTC"}))
    # Userns mode's namespaces are held by a process of the instance's uid; root mode's
    # by the gateway's descriptors alone.
    holders = [pid for pid in gw.descendants() if _is_holder(pid)]
    assert bool(holders) == (mode == "userns"), (mode, holders)
    for pid in holders:
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid >= 2_000_000_000, "a holder runs as an instance's uid, never as root"


def _is_holder(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sh\0-c\0set -e; echo 1")
    except OSError:
        return False


@pytest.mark.parametrize(
    ("mode", "missing"),
    [
        ("root", "sys_admin"),
        ("root", "net_admin"),
        ("root", "setuid"),
        ("root", "dac_override"),
        ("userns", "net_admin"),
        ("userns", "setgid"),
        ("userns", "kill"),
    ],
)
def test_a_missing_capability_is_named_at_start_up(tmp_path: Path, mode: str, missing: str) -> None:
    caps = [c for c in CAPS[mode] if c != missing]
    out = subprocess.run(
        [*only(*caps), GIGMCP, "serve", "--listen", "127.0.0.1:1"],
        env={
            "PATH": "/usr/bin:/bin",
            "GIG_DATA_DIR": str(tmp_path / "d"),
            "HOME": str(tmp_path),
            "GIG_SANDBOX_MODE": mode,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"CAP_{missing.upper()}" in out.stderr and "refusing to start" in out.stderr
    assert "Traceback" not in out.stderr
