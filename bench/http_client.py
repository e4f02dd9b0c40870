"""A lean Streamable HTTP client: asyncio + h11, keep-alive, one connection per worker.

Owns the HTTP side of the load generator: POST a JSON-RPC message, read a JSON or SSE
answer, pick out the response to our id; the legacy handshake (``initialize`` →
``Mcp-Session-Id`` → ``notifications/initialized``, ``DELETE`` at the end) and the
2026-07-28 stateless form (``_meta`` + ``Mcp-Method``/``Mcp-Name`` headers). It must stay
cheap per call, so the client does not dominate what is measured, and it must never
block forever: every exchange has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import orjson

from bench import wire

Connector = Callable[[], socket.socket]


@dataclass
class Endpoint:
    """Where an arm listens and how to reach it."""

    host: str
    port: int
    path: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Peers inside a network namespace are reached through a socket made in there.
    connector: Connector | None = None

    def connect_socket(self) -> socket.socket:
        if self.connector is not None:
            return self.connector()
        sock = socket.create_connection((self.host, self.port), timeout=5)
        sock.setblocking(False)
        return sock


class HttpError(wire.WrongAnswer):
    pass


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before any answer."""


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        self._host = f"{endpoint.host}:{endpoint.port}".encode()

    async def _open(self) -> None:
        sock = self.endpoint.connect_socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """One exchange. The caller bounds it (the runner wraps every operation in a timeout)."""
        return await self._request(method, headers, body)

    async def _request(
        self, method: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        reused = self._h11 is not None and self._h11.our_state is h11.IDLE
        try:
            return await self._exchange(method, headers, body, reused)
        except _StaleConnection:
            # A server may close an idle keep-alive connection at any time (uvicorn does
            # after 5 s). Nothing was answered, so sending again on a fresh one is safe.
            return await self._exchange(method, headers, body, reused=False)

    async def _exchange(
        self, method: bytes, headers: list[tuple[bytes, bytes]], body: bytes, reused: bool
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        if not reused:
            await self.close()
            await self._open()
        assert self._h11 is not None
        assert self._writer is not None
        assert self._reader is not None
        conn = self._h11
        all_headers = [
            (b"host", self._host),
            (b"content-length", str(len(body)).encode()),
            *self.endpoint.headers,
            *headers,
        ]
        target = self.endpoint.path.encode()
        out = conn.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        try:
            self._writer.write(out)
        except OSError:
            await self.close()
            if reused:
                raise _StaleConnection from None
            raise
        status = 0
        resp_headers: dict[bytes, bytes] = {}
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self._reader.read(1 << 18)
                except OSError:  # reset, or a broken pipe from our own write
                    data = b""
                if not data:
                    await self.close()
                    if reused and status == 0:
                        raise _StaleConnection
                    raise HttpError("connection closed mid-answer")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = {k.lower(): v for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpError("connection closed")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return status, resp_headers, b"".join(chunks)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None
        self._h11 = None


def _messages(headers: dict[bytes, bytes], body: bytes) -> list[dict[str, Any]]:
    """JSON-RPC messages in an answer body, JSON or SSE."""
    ctype = headers.get(b"content-type", b"")
    if ctype.startswith(b"application/json"):
        parsed = orjson.loads(body)
        return parsed if isinstance(parsed, list) else [parsed]
    if ctype.startswith(b"text/event-stream"):
        # One pass over the lines, copying a 1 MB data line as few times as possible: the
        # client must stay cheap next to the system it measures.
        found: list[dict[str, Any]] = []
        data: list[bytes] = []
        for line in body.split(b"\n"):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    found.append(orjson.loads(b"\n".join(data)))
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        if data:
            found.append(orjson.loads(b"\n".join(data)))
        return found
    raise HttpError(f"unexpected content-type {ctype!r}: {body[:200]!r}")


class McpClient:
    """One MCP client (one legacy session, or stateless) over any number of connections."""

    def __init__(self, endpoint: Endpoint, ids: wire.Ids, modern: bool) -> None:
        self.endpoint = endpoint
        self.ids = ids
        self.modern = modern
        self.session_id: bytes | None = None
        self.version = wire.MODERN if modern else wire.LEGACY

    def _headers(self, method: str, name: str | None) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ]
        if self.modern:
            headers.append((b"mcp-protocol-version", wire.MODERN.encode()))
            headers.append((b"mcp-method", method.encode()))
            if name is not None:
                headers.append((b"mcp-name", name.encode()))
        else:
            if self.session_id is not None:
                headers.append((b"mcp-session-id", self.session_id))
                headers.append((b"mcp-protocol-version", self.version.encode()))
        return headers

    async def post(
        self, conn: Connection, req_id: int, body: bytes, method: str, name: str | None = None
    ) -> dict[str, Any]:
        status, headers, payload = await conn.request(b"POST", self._headers(method, name), body)
        if status != 200:
            raise HttpError(f"HTTP {status} for {method}: {payload[:300]!r}")
        for message in _messages(headers, payload):
            if message.get("id") == req_id and "method" not in message:
                return message
        raise HttpError(f"no answer to request {req_id} in the {method} response")

    async def open(self, conn: Connection) -> None:
        """Start the client: ``server/discover`` (modern) or the legacy handshake."""
        req_id = self.ids()
        if self.modern:
            body = wire.request(req_id, "server/discover", {}, True)
            message = await self.post(conn, req_id, body, "server/discover")
            wire.check_result(message, req_id)
            return
        status, headers, payload = await conn.request(
            b"POST", self._headers("initialize", None), wire.initialize(req_id)
        )
        if status != 200:
            raise HttpError(f"HTTP {status} for initialize: {payload[:300]!r}")
        session = headers.get(b"mcp-session-id")
        answer = next((m for m in _messages(headers, payload) if m.get("id") == req_id), None)
        if answer is None:
            raise HttpError("no answer to initialize")
        result = wire.check_result(answer, req_id)
        self.version = str(result.get("protocolVersion", wire.LEGACY))
        self.session_id = session
        status, _, payload = await conn.request(
            b"POST", self._headers("notifications/initialized", None), wire.INITIALIZED
        )
        if status not in (200, 202):
            raise HttpError(f"HTTP {status} for notifications/initialized: {payload[:200]!r}")

    async def close(self, conn: Connection) -> None:
        """End a legacy session with DELETE (stateless clients have nothing to end)."""
        if self.modern or self.session_id is None:
            return
        status, _, payload = await conn.request(b"DELETE", self._headers("", None))
        self.session_id = None
        if status not in (200, 202, 204, 405):
            raise HttpError(f"HTTP {status} for DELETE: {payload[:200]!r}")

    async def call(self, conn: Connection, call: wire.Call) -> None:
        call.check(await self.post(conn, call.id, call.body(self.modern), "tools/call", call.tool))

    async def list_tools(self, conn: Connection) -> list[str]:
        """Every tool name, following ``nextCursor`` through all pages."""
        names: list[str] = []
        cursor: str | None = None
        for _ in range(1000):  # bounded: a cursor loop is an error, not a hang
            req_id = self.ids()
            params = {"cursor": cursor} if cursor else None
            body = wire.request(req_id, "tools/list", params, self.modern)
            result = wire.check_result(await self.post(conn, req_id, body, "tools/list"), req_id)
            names.extend(wire.tool_names(result))
            cursor = result.get("nextCursor")
            if not cursor:
                return names
        raise HttpError("tools/list paging did not end after 1000 pages")
