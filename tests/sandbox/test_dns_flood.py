"""A jail flooding its resolver must not slow down anyone else.

A hostile MCP server (hostile/dns_flood.py), jailed by a real ``gigmcp serve`` in one
profile, sends random DNS queries at its resolver as fast as it can; meanwhile a client
of another profile calls a tool of another server, and its latency is measured against
a baseline taken in the same run without the flood. The bound is generous (the box is
shared): what it catches is the event loop frozen for seconds, as it was when the
resolver read until the socket was empty and wrote an audit row per refused query.

Twice: with the walls' per-instance DNS rate limits standing ("walls"), where the other
tenant's own DNS queries must all be answered too; and with both walls' limits lifted
for the flood ("gateway alone": a rule accepting the DNS port inserted before them, in
the host table and in the flooder's namespace), so the whole flood reaches the gateway
and only its own bounds keep the loop free.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from mcp.client.client import Client

from gigmcp.sandbox.firewall import TABLE
from tests.support.gateway import ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

pytestmark = pytest.mark.root

JAILED_PY = str(ROOT / "tests" / "peers" / "pyvenv" / "bin" / "python")
FLOODER = (JAILED_PY, str(Path(__file__).parent / "hostile" / "dns_flood.py"))
SUBNET = "10.213.0.0/24"
DNS_PORT = 3128 + 3  # the gateway's default egress base port, plus three
FLOOD_S = 6.0
BASELINE_CALLS = 40
CALL_TIMEOUT_S = 15.0
LOOKUP_EVERY_S = 0.05
# One aggregated row per instance, reason and interval: a 6 s flood makes a handful.
MAX_FLOOD_ROWS = 20


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed_calls(
    client: Client, *, count: int | None = None, until: float | None = None
) -> tuple[list[float], list[str]]:
    """Echo calls one after another; their latencies, and what went wrong with any."""
    latencies: list[float] = []
    failures: list[str] = []
    while (count is not None and len(latencies) + len(failures) < count) or (
        until is not None and time.monotonic() < until
    ):
        start = time.monotonic()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                result = await client.call_tool("calm_echo", {"text": "ping"})
            assert text_of(result) == "ping"
        except Exception as exc:  # every failure is counted and reported
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        latencies.append(time.monotonic() - start)
    return latencies, failures


async def lookups(client: Client, *, until: float) -> list[str]:
    """The tenant's own DNS queries, one after another: each answered or not."""
    outcomes = []
    while time.monotonic() < until:
        result = await client.call_tool("calm_lookup", {"name": "tenant.example.test"})
        outcomes.append(text_of(result))
        await asyncio.sleep(LOOKUP_EVERY_S)  # a client's pace, well within its own limit
    return outcomes


def summary(latencies: list[float]) -> str:
    ms = [x * 1000 for x in latencies]
    return (
        f"{len(ms)} calls, p50 {statistics.median(ms):.1f} ms, p99 {p(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms"
    )


async def lift_dns_limits(g: GatewayProc) -> None:
    """Accept the flooder's DNS before either wall's rate limit looks at it (the host
    table goes with the gateway, the namespace with the flooder)."""
    async with asyncio.timeout(10):
        while not (workers := flood_workers(g)):  # noqa: ASYNC110 - processes, no event
            await asyncio.sleep(0.01)
    netns = f"/proc/{workers[0]}/ns/net"
    accept = ["insert", "rule", "inet", TABLE]
    for cmd in (
        ["nsenter", f"--net={netns}", "nft", *accept, "output", "udp", "dport", str(DNS_PORT)],
        ["nft", *accept, "guard_input", "udp", "dport", str(DNS_PORT)],
    ):
        subprocess.run([*cmd, "accept"], check=True, capture_output=True, timeout=10)


def flood_workers(g: GatewayProc) -> list[int]:
    found = []
    for pid in g.descendants():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dns_flood.py\0--worker" in cmdline:
            found.append(pid)
    return found


@pytest.mark.parametrize("limits", ["walls", "gateway alone"])
async def test_attack_a_dns_flood_from_a_jail_does_not_stall_another_profiles_calls(
    tmp_path: Path, limits: str
) -> None:
    with gateway(tmp_path, jailed=True, GIG_SANDBOX_SUBNET=SUBNET, GIG_SANDBOX_POOL="0") as g:
        g.add_server("dnsflood", FLOODER)
        g.add_server("calm", FLOODER)  # the same program, well-behaved: echo and lookup
        g.profile("hostile", "dnsflood")
        g.profile("tenant", "calm")
        g.start()
        async with connect(g, "tenant", "auto") as calm, connect(g, "hostile", "auto") as bad:
            assert text_of(await bad.call_tool("dnsflood_echo", {"text": "up"})) == "up"
            await timed_calls(calm, count=5)  # warm: the jail is built, the session open
            baseline, base_failures = await timed_calls(calm, count=BASELINE_CALLS)
            assert not base_failures, base_failures
            await bad.call_tool("dnsflood_flood", {"seconds": FLOOD_S, "workers": 2})
            flood_end = time.monotonic() + FLOOD_S
            if limits == "gateway alone":
                await lift_dns_limits(g)
            looked = asyncio.create_task(lookups(calm, until=flood_end))
            during, failures = await timed_calls(calm, until=flood_end)
            answers = await looked
            sent, refused = map(
                int, text_of(await bad.call_tool("dnsflood_flood_report", {})).split()
            )
        g.stop()  # the audit trail is flushed at shutdown
        db = sqlite3.connect(g.data_dir / "gigmcp.db")
        try:
            rows = db.execute(
                "SELECT * FROM egress_audit WHERE server = 'dnsflood' AND method = 'DNS'"
            ).fetchall()
            names = [d[0] for d in db.execute("SELECT * FROM egress_audit").description]
        finally:
            db.close()
    report = (
        f"[{limits}] flood: {sent + refused} queries tried in {FLOOD_S:.0f} s "
        f"({(sent + refused) / FLOOD_S:.0f}/s), {refused} of them refused at once by the "
        f"jail's own wall; baseline: {summary(baseline)}; "
        f"during the flood: {summary(during) if during else 'no call answered'}, "
        f"{len(failures)} failed; the tenant's own DNS queries meanwhile: "
        f"{answers.count('answered')} of {len(answers)} answered; "
        f"audit rows for the flood: {len(rows)}"
    )
    print(report)
    assert sent + refused > 10_000 * FLOOD_S, f"control: the flood did flood. {report}"
    assert not failures, f"{failures[:3]}. {report}"
    bound = max(10 * p(baseline, 0.99), 0.5)
    assert during and p(during, 0.99) < bound, report
    if limits == "walls":
        assert set(answers) == {"answered"}, f"the tenant's DNS kept working. {report}"
    else:
        assert refused < sent, f"control: the jail's own wall let the flood out. {report}"
    assert 0 < len(rows) <= MAX_FLOOD_ROWS, report
    flood_rows = [dict(zip(names, row, strict=True)) for row in rows]
    counted = sum(r["count"] for r in flood_rows)
    assert counted > len(rows), f"rows stand for many queries each: {flood_rows[:3]}"
    assert all(r["reason"] in ("dns-not-allowed", "dns-rate-limited") for r in flood_rows)
    assert any("flood.invalid" in (r["host"] or "") for r in flood_rows), "with sample names"
