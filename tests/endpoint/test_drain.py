"""A gateway told to stop (SIGTERM, as an orchestrator does): it stops accepting, lets
the calls in flight finish (up to GIG_DRAIN_SECONDS), then stops its instances and
writes, seals and signs what is left of the audit before it exits 0. A call longer
than the limit is cut off at the limit: a stop never hangs. Real gateway process, real
MCP server (tests/servers/tiny.py, which can be told to take its time), the official
SDK client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.gateway import ROOT, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

TINY = (sys.executable, str(ROOT / "tests" / "servers" / "tiny.py"))


@contextlib.contextmanager
def serving(tmp_path: Path, drain: int) -> Iterator[tuple[GatewayProc, subprocess.Popen[bytes]]]:
    """A started gateway with the slow-capable server in profile ``pp``, and its process."""
    with gateway(tmp_path, GIG_DRAIN_SECONDS=str(drain)) as g:
        g.add_server("tiny", TINY)
        g.profile("pp", "tiny")
        g.start()
        assert g.proc is not None
        yield g, g.proc


async def _stopped(proc: subprocess.Popen[bytes], since: float, output: str) -> float:
    """Wait for the process to exit after SIGTERM; how long it took. It exits 0 or with
    the signal (uvicorn re-raises it)."""
    code = await asyncio.to_thread(proc.wait, 30)
    assert code in (0, -signal.SIGTERM), output
    return time.monotonic() - since


async def test_sigterm_lets_the_call_in_flight_finish_then_seals_the_audit(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, 20) as (g, proc):
        async with connect(g, "pp", "auto") as c:
            await c.list_tools()
            call = asyncio.create_task(c.call_tool("tiny_hello", {"name": "x", "delay": 3}))
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            await asyncio.sleep(0.5)
            # Draining: no new connection is taken.
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{g.base}/mcp/p/pp", timeout=2)
            result = await call
        assert text_of(result) == "hello x" and not result.is_error
        took = await _stopped(proc, stopped_at, g.output())
        assert took < 15, f"the stop took {took:.1f} s after the call ended"
        with sqlite3.connect(g.data_dir / "gigmcp.db") as db:
            calls = db.execute(
                "SELECT outcome, seq FROM audit_events WHERE action = 'tools/call'"
            ).fetchall()
            checkpoints = db.execute(
                "SELECT count(*) FROM audit_checkpoints WHERE stream = 'events'"
            ).fetchone()[0]
        # Written, sealed and signed on the way out.
        assert len(calls) == 1 and calls[0][0] == "ok" and calls[0][1] is not None, calls
        assert checkpoints >= 1
        assert "OK" in g.cli("audit", "verify").stdout


async def test_a_call_longer_than_the_drain_limit_is_cut_off_and_the_stop_does_not_hang(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, 1) as (g, proc):

        async def stuck() -> None:
            async with connect(g, "pp", "auto") as c:
                await c.call_tool("tiny_hello", {"name": "x", "delay": 60})

        task = asyncio.create_task(stuck())
        await asyncio.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        took = await _stopped(proc, time.monotonic(), g.output())
        assert took < 15, f"the stop took {took:.1f} s with a 1 s drain"
        with pytest.raises(BaseException):
            await asyncio.wait_for(task, 30)
