"""The upstream connection and its handshake over an in-memory transport: fast, in-process,
beside the tests that run real MCP servers through the gateway.

A scripted server end reads what the connection writes and answers as a server would;
the peer is a recorder of what the connection hands the router. Each test is one
behaviour of ``upstream/connection.py`` or ``upstream/handshake.py``: a request and its
response, a notification, a server→client request, the server dying mid-request (an
error at once, never a hang), an over-size line (the instance ended), the legacy and
modern handshakes and a failed one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.mcp import versions as v
from gigmcp.upstream.connection import StdioUpstream, WireLimits
from gigmcp.upstream.handshake import StartError, connect
from gigmcp.upstream.memory import MemoryTransport, ServerEnd, memory_pair
from gigmcp.upstream.types import MessageTooLarge, UpstreamClosed

KEY = InstanceKey(1, "memory")
CLIENT_INFO: JSON = {"name": "gigmcp-test", "version": "0"}
# Generous for an in-process exchange: only a hang would reach it.
WAIT = 5.0


class Recorder:
    """The router's side of :class:`~gigmcp.upstream.types.UpstreamPeer`, recorded."""

    def __init__(self) -> None:
        self.notifications: asyncio.Queue[JSON] = asyncio.Queue()
        self.requests: list[JSON] = []
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_notification(self, key: InstanceKey, message: JSON) -> None:
        self.notifications.put_nowait(message)

    async def on_request(self, key: InstanceKey, message: JSON) -> JSON:
        self.requests.append(message)
        return {"result": {"roots": [{"uri": "file:///work", "name": "work"}]}}

    def on_closed(self, key: InstanceKey, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)


async def receive(server: ServerEnd) -> Any:
    line = await asyncio.wait_for(server.read_line(), WAIT)
    assert line is not None, "the gateway closed the stream"
    return json.loads(line)


def send(server: ServerEnd, message: JSON) -> None:
    server.write(json.dumps(message).encode() + b"\n")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MemoryTransport, ServerEnd, Recorder]]:
    transport, server = memory_pair()
    yield transport, server, Recorder()
    server.exit()


async def test_a_request_gets_its_response(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(transport, KEY, peer, client_info=CLIENT_INFO)
    pending = conn.request("tools/list", {"cursor": "c1"})
    asked = await receive(server)
    assert asked == {
        "jsonrpc": "2.0",
        "id": pending.id,
        "method": "tools/list",
        "params": {"cursor": "c1"},
    }
    send(server, {"jsonrpc": "2.0", "id": asked["id"], "result": {"tools": []}})
    assert await pending.wait(WAIT) == {"jsonrpc": "2.0", "id": pending.id, "result": {"tools": []}}
    assert conn.pending_count == 0
    await conn.close()


async def test_a_modern_request_carries_the_protocol_meta(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(transport, KEY, peer, client_info=CLIENT_INFO)
    conn.era, conn.protocol_version = "modern", v.MODERN_VERSIONS[0]
    conn.request("tools/list", None)
    meta = (await receive(server))["params"]["_meta"]
    assert meta[v.META_PROTOCOL_VERSION] == v.MODERN_VERSIONS[0]
    assert meta[v.META_CLIENT_INFO] == CLIENT_INFO
    await conn.close()


async def test_a_notification_reaches_the_peer(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(transport, KEY, peer, client_info=CLIENT_INFO)
    message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    send(server, message)
    assert await asyncio.wait_for(peer.notifications.get(), WAIT) == message
    await conn.close()


async def test_a_server_request_is_answered_through_the_peer(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(transport, KEY, peer, client_info=CLIENT_INFO)
    send(server, {"jsonrpc": "2.0", "id": "s1", "method": "roots/list"})
    answer = await receive(server)
    assert answer == {
        "jsonrpc": "2.0",
        "id": "s1",
        "result": {"roots": [{"uri": "file:///work", "name": "work"}]},
    }
    assert [r["method"] for r in peer.requests] == ["roots/list"]
    await conn.close()


async def test_a_server_dying_mid_request_fails_it_at_once(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(transport, KEY, peer, client_info=CLIENT_INFO)
    pending = conn.request("tools/call", {"name": "slow"})
    await receive(server)
    server.exit(1)
    # No timeout of the caller's decides this: the wait is unbounded.
    with pytest.raises(UpstreamClosed, match="server closed its stdout"):
        await asyncio.wait_for(pending.wait(None), WAIT)
    assert await asyncio.wait_for(peer.closed, WAIT) == "server closed its stdout"
    assert conn.closed
    with pytest.raises(UpstreamClosed):
        conn.request("tools/list", None)


async def test_an_over_size_line_ends_the_instance(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair
    conn = StdioUpstream(
        transport, KEY, peer, client_info=CLIENT_INFO, limits=WireLimits(max_message_bytes=1024)
    )
    pending = conn.request("tools/list", None)
    await receive(server)
    # Within the limit, in pieces: accepted.
    send(
        server, {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * 900}}
    )
    assert (await asyncio.wait_for(peer.notifications.get(), WAIT))[
        "method"
    ] == "notifications/message"
    # Past it, without a newline yet: refused before the line ends.
    server.write(b'{"jsonrpc": "2.0", "id": 1, "result": {"pad": "' + b"y" * 2048)
    with pytest.raises(MessageTooLarge, match="larger than 1024 bytes"):
        await asyncio.wait_for(pending.wait(None), WAIT)
    assert server.killed
    assert await asyncio.wait_for(transport.wait(), WAIT) < 0


async def test_the_legacy_handshake(pair: tuple[MemoryTransport, ServerEnd, Recorder]) -> None:
    transport, server, peer = pair

    async def legacy_server() -> list[str]:
        seen = []
        while (line := await server.read_line()) is not None:
            msg = json.loads(line)
            seen.append(msg["method"])
            if msg["method"] == "server/discover":
                send(
                    server,
                    {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no"}},
                )
            elif msg["method"] == "initialize":
                result = {
                    "protocolVersion": v.LEGACY_VERSIONS[0],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "legacy", "version": "1"},
                }
                send(server, {"jsonrpc": "2.0", "id": msg["id"], "result": result})
            elif msg["method"] == "notifications/initialized":
                return seen
        return seen

    script = asyncio.create_task(legacy_server())
    conn = await connect(transport, KEY, peer, client_info=CLIENT_INFO, timeout=WAIT)
    assert await asyncio.wait_for(script, WAIT) == [
        "server/discover",
        "initialize",
        "notifications/initialized",
    ]
    assert (conn.era, conn.protocol_version) == ("legacy", v.LEGACY_VERSIONS[0])
    assert conn.server_info == {"name": "legacy", "version": "1"}
    assert conn.capabilities == {"tools": {}}
    await conn.close()


async def test_the_modern_handshake(pair: tuple[MemoryTransport, ServerEnd, Recorder]) -> None:
    transport, server, peer = pair

    async def modern_server() -> None:
        msg = await receive(server)
        assert msg["method"] == "server/discover"
        result = {
            "supportedVersions": [v.MODERN_VERSIONS[0]],
            "capabilities": {"resources": {}},
            "_meta": {v.META_SERVER_INFO: {"name": "modern", "version": "2"}},
        }
        send(server, {"jsonrpc": "2.0", "id": msg["id"], "result": result})

    script = asyncio.create_task(modern_server())
    conn = await connect(transport, KEY, peer, client_info=CLIENT_INFO, timeout=WAIT)
    await script
    assert (conn.era, conn.protocol_version) == ("modern", v.MODERN_VERSIONS[0])
    assert conn.server_info == {"name": "modern", "version": "2"}
    await conn.close()


async def test_a_server_that_exits_during_the_handshake_is_reported(
    pair: tuple[MemoryTransport, ServerEnd, Recorder],
) -> None:
    transport, server, peer = pair

    async def dying_server() -> None:
        await receive(server)
        server.exit(3)

    script = asyncio.create_task(dying_server())
    with pytest.raises(StartError, match=r"memory: .*\(process exited with code 3\)"):
        await connect(transport, KEY, peer, client_info=CLIENT_INFO, timeout=WAIT)
    await script
