"""Server instances through a real gateway: crashes fail fast and recover, idle instances
are reaped and come back, slow servers stall nobody, selections apply at once, every
call is audited, and shutdown leaves no process behind.

Nothing here may depend on how busy the machine is: tests wait for events (a pid gone,
a line in a server's log) with generous bounds that only catch a hung gateway, and
claims such as "at once" are shown by what happened (which error ended a call, what was
still running), never by how long it took."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from gigmcp.mcp.jsonrpc import REQUEST_TIMEOUT
from tests.support.gateway import GatewayProc, gateway
from tests.support.mcp_client import connect, text_of

CRASHY = (sys.executable, str(Path(__file__).resolve().parent.parent / "servers" / "crashy.py"))


@pytest.fixture(scope="module")
def lgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    tmp = tmp_path_factory.mktemp("life")
    with gateway(tmp, GIG_IDLE_TIMEOUT="2", GIG_REQUEST_TIMEOUT="20") as g:
        g.add_server("crashy", CRASHY)
        g.add_server("steady", CRASHY)
        g.profile("life", "crashy", "steady")
        g.start()
        yield g


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_crash_mid_call_fails_at_once_then_the_server_comes_back(
    lgw: GatewayProc, mode: str
) -> None:
    async with connect(lgw, "life", mode) as c:
        before = text_of(await c.call_tool("crashy_pid", {}))
        outcome: object = None
        try:
            result = await c.call_tool("crashy_crash", {})
            outcome = result.is_error
        except MCPError as err:
            outcome = err
        assert outcome, "a crash must surface as an error"
        # At once: the crash ended the call, not the gateway's request timeout.
        assert not (isinstance(outcome, MCPError) and outcome.code == REQUEST_TIMEOUT), outcome
        after = before
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # restarted in the background with backoff
            try:
                after = text_of(await c.call_tool("crashy_pid", {}))
                break
            except MCPError:
                await asyncio.sleep(0.2)
        assert after != before
    logs = lgw.cli("server", "logs", "crashy", "--profile", "life").stdout
    assert "crashing on purpose" in logs
    assert "exited with code 3" in logs


async def test_a_slow_server_does_not_stall_another(lgw: GatewayProc) -> None:
    async with connect(lgw, "life", "auto") as c:
        slow = asyncio.ensure_future(
            c.call_tool("crashy_watched", {"seconds": 30, "marker": "stall"})
        )
        # Only once the slow call is under way in its server is the other one sent.
        assert await _log_says(lgw, "crashy", "watching stall")
        echo = await c.call_tool("steady_echo", {"text": "unblocked"})
        assert text_of(echo) == "unblocked"
        # Answered while the slow call still runs: nothing waited for it.
        assert not slow.done()
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow


async def test_idle_instance_is_reaped_and_restarts_transparently(lgw: GatewayProc) -> None:
    async with connect(lgw, "life", "auto") as c:
        first = int(text_of(await c.call_tool("steady_pid", {})))
        # GIG_IDLE_TIMEOUT is 2 s: wait for the reaper, however late a busy machine runs it.
        assert await asyncio.to_thread(_gone_within, first, 60.0), "idle instance was not reaped"
        second = int(text_of(await c.call_tool("steady_pid", {})))
        assert second != first
    # Not alive(second): on a busy machine the restart itself can outlast the idle
    # timeout, and the instance is then reaped again as soon as the call is answered.
    # Its log shows that this call started it, after the first was reaped for idling.
    logs = lgw.server_logs("steady", "life")
    assert "idle: stopping" in logs
    assert f"crashy: started pid {second}" in logs


async def test_disabling_a_tool_applies_at_once_and_notifies_listeners(lgw: GatewayProc) -> None:
    changed = asyncio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connect(lgw, "life", "legacy", message_handler=on_message) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert "steady_echo" in names
        lgw.cli("tool", "disable", "life", "steady", "echo")
        with pytest.raises(MCPError, match="Unknown tool"):
            await c.call_tool("steady_echo", {"text": "must not run"})
        assert "steady_echo" not in {t.name for t in (await c.list_tools()).tools}
        await asyncio.wait_for(changed.wait(), 60)
        lgw.cli("tool", "enable", "life", "steady", "echo")
        assert text_of(await c.call_tool("steady_echo", {"text": "back"})) == "back"


async def test_every_call_is_audited_without_argument_values(lgw: GatewayProc) -> None:
    secretish = "argument-value-that-must-not-be-stored"
    async with connect(lgw, "life", "auto") as c:
        await c.call_tool("steady_echo", {"text": secretish})
    db = lgw.data_dir / "gigmcp.db"
    deadline = time.monotonic() + 60
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline and not rows:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT action, outcome, server, tool, arg_bytes, duration_ms, user_id, profile_id "
                "FROM audit_events WHERE action='tools/call' AND tool='echo' AND arg_bytes > 40"
            ).fetchall()
        await asyncio.sleep(0.2)
    assert rows, "no audit row for the call"
    action, outcome, server, tool, arg_bytes, duration, user, profile = rows[-1]
    assert (action, outcome, server, tool) == ("tools/call", "ok", "steady", "echo")
    assert isinstance(arg_bytes, int) and arg_bytes >= len(secretish)
    assert isinstance(duration, float) and user is not None and profile is not None
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    blob = b"".join(p.read_bytes() for p in lgw.data_dir.glob("gigmcp.db*"))
    assert secretish.encode() not in blob
    assert lgw.tokens["life"].encode() not in blob


def _running_gateway_with_servers(g: GatewayProc) -> list[int]:
    """Start ``g`` with one server, use it, and return the pids below the gateway."""
    g.add_server("crashy", CRASHY)
    g.profile("p1", "crashy")
    g.start()

    async def use() -> None:
        async with connect(g, "p1", "auto") as c:
            await c.call_tool("crashy_echo", {"text": "x"})

    asyncio.run(use())
    children = g.descendants()
    assert children
    return children


def _all_gone(pids: list[int], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not [p for p in pids if alive(p)]


def test_shutdown_leaves_no_process_behind(tmp_path: Path) -> None:
    with gateway(tmp_path) as g:
        children = _running_gateway_with_servers(g)
        g.stop()
    assert _all_gone(children)


def _wait_for_log(gw: GatewayProc, needle: str) -> bool:
    return gw.wait_for_server_log("steady", "life", needle)


async def _log_says(gw: GatewayProc, server: str, needle: str) -> bool:
    """Wait for a line in a server's log without blocking the test's event loop."""
    return await asyncio.to_thread(gw.wait_for_server_log, server, "life", needle)


async def test_modern_client_hanging_up_cancels_the_upstream_call(lgw: GatewayProc) -> None:
    import httpx2 as httpx

    from tests.support.mcp_http import modern_body, modern_headers

    body = modern_body(
        "tools/call", {"name": "steady_watched", "arguments": {"seconds": 30, "marker": "hangup"}}
    )
    headers = modern_headers(lgw.tokens["life"], "tools/call", "steady_watched")
    async with httpx.AsyncClient(timeout=60) as client:
        pending = asyncio.ensure_future(client.post(lgw.url("life"), json=body, headers=headers))
        # Hang up once the call is under way in the server (not after a fixed time: on a
        # busy machine the call may not have reached it yet).
        assert await _log_says(lgw, "steady", "watching hangup")
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
    assert await _log_says(lgw, "steady", "cancelled hangup")


async def test_legacy_notifications_cancelled_reaches_the_server(lgw: GatewayProc) -> None:
    import httpx2 as httpx

    async with httpx.AsyncClient(timeout=20) as client:
        h = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {lgw.tokens['life']}",
        }
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        r = await client.post(lgw.url("life"), json=init, headers=h)
        h["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        h["MCP-Protocol-Version"] = "2025-11-25"
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "steady_watched",
                "arguments": {"seconds": 30, "marker": "legacy-cancel"},
            },
        }
        pending = asyncio.ensure_future(client.post(lgw.url("life"), json=call, headers=h))
        assert await _log_says(lgw, "steady", "watching legacy-cancel")
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 7, "reason": "user"},
        }
        assert (await client.post(lgw.url("life"), json=cancel, headers=h)).status_code == 202
        answer = await asyncio.wait_for(pending, 60)
        assert "result" not in answer.text  # a cancelled request gets no answer
    assert await _log_says(lgw, "steady", "cancelled legacy-cancel")


def test_servers_die_with_a_gateway_killed_by_sigkill(tmp_path: Path) -> None:
    import signal

    with gateway(tmp_path) as g:
        children = _running_gateway_with_servers(g)
        assert g.proc is not None
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait(5)
        assert _all_gone(children)


def _modern_call(
    gw: GatewayProc, profile: str, name: str, arguments: dict, **extra_headers: str
) -> dict:
    import httpx2 as httpx

    from tests.support.mcp_http import modern_body, modern_headers

    headers = dict(modern_headers(gw.tokens[profile], "tools/call", name), **extra_headers)
    r = httpx.post(
        gw.url(profile),
        json=modern_body("tools/call", {"name": name, "arguments": arguments}),
        headers=headers,
        timeout=30,
    )
    return {"status": r.status_code, **r.json()}


def test_mcp_param_headers_must_match_the_marked_arguments(lgw: GatewayProc) -> None:
    args = {"region": "eu-west1", "query": "q"}
    ok = _modern_call(lgw, "life", "steady_regional", args, **{"Mcp-Param-Region": "eu-west1"})
    assert ok["status"] == 200
    assert ok["result"]["content"][0]["text"] == "eu-west1:q"
    missing = _modern_call(lgw, "life", "steady_regional", args)
    assert missing["error"]["code"] == -32020
    lying = _modern_call(lgw, "life", "steady_regional", args, **{"Mcp-Param-Region": "us-east1"})
    assert lying["error"]["code"] == -32020
    encoded = "=?base64?" + __import__("base64").b64encode(b"eu-west1").decode() + "?="
    assert (
        _modern_call(lgw, "life", "steady_regional", args, **{"Mcp-Param-Region": encoded})[
            "status"
        ]
        == 200
    )


def test_a_request_past_its_timeout_fails_cleanly_and_is_cancelled_upstream(tmp_path: Path) -> None:
    with gateway(tmp_path, GIG_REQUEST_TIMEOUT="1.5") as g:
        g.add_server("steady", CRASHY)
        g.profile("life", "steady")
        g.start()
        # The server would answer after 30 s; the gateway's timeout error (not the
        # server's answer) shows it gave up after its own 1.5 s.
        answer = _modern_call(g, "life", "steady_watched", {"seconds": 30, "marker": "deadline"})
        assert answer["error"]["code"] == REQUEST_TIMEOUT
        assert "did not answer in time" in answer["error"]["message"]
        assert _wait_for_log(g, "cancelled deadline")


async def test_an_unassigned_or_removed_server_stops_at_once(tmp_path: Path) -> None:
    # Not when it would have idled out (here: an hour): what was taken away is gone.
    with gateway(tmp_path, GIG_IDLE_TIMEOUT="3600") as g:
        g.add_server("gone", CRASHY)
        g.add_server("kept", CRASHY)
        g.profile("pp", "gone", "kept")
        g.start()
        async with connect(g, "pp", "auto") as c:
            await c.call_tool("gone_pid", {})
            kept_pid = int(text_of(await c.call_tool("kept_pid", {})))
            gone_pid = int(text_of(await c.call_tool("gone_pid", {})))
        g.cli("profile", "unassign", "pp", "gone")
        assert await asyncio.to_thread(_gone_within, gone_pid, 60.0)
        assert alive(kept_pid)
        g.cli("server", "remove", "kept")
        assert await asyncio.to_thread(_gone_within, kept_pid, 60.0)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)
