"""One JSON-RPC connection to an MCP server over its stdio: newline-delimited messages.

Owns upstream request ids, the table of pending requests, and the reader that sorts what
the server says into responses, server→client requests and notifications. When the
server goes away every pending request fails at once with :class:`UpstreamClosed`; it
must never leave a caller waiting on a dead process, and never log message contents
beyond a short excerpt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.supervisor.launcher import LaunchedProcess
from gigmcp.upstream.types import JSON, Era, InstanceKey, UpstreamClosed, UpstreamPeer

log = logging.getLogger(__name__)

# Above this many unsent bytes, writers wait for the pipe (backpressure); below it a
# write is fire-and-forget, which keeps the common small request at one syscall.
_HIGH_WATER = 1024 * 1024


class _Pending:
    __slots__ = ("_conn", "_future", "_id")

    def __init__(self, conn: StdioUpstream, request_id: int) -> None:
        self._conn = conn
        self._id = request_id
        self._future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()

    @property
    def id(self) -> int:
        return self._id

    @property
    def future(self) -> asyncio.Future[JSON]:
        return self._future

    async def wait(self, timeout: float | None) -> JSON:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._future)
        except TimeoutError:
            self.cancel("timeout")
            raise

    def cancel(self, reason: str) -> None:
        if self._conn._pending.pop(self._id, None) is not None and not self._conn.closed:
            self._conn.notify("notifications/cancelled", {"requestId": self._id, "reason": reason})
        if not self._future.done():
            self._future.cancel()


class StdioUpstream:
    """Implements :class:`gigmcp.upstream.types.Upstream` over a launched process."""

    def __init__(
        self,
        process: LaunchedProcess,
        key: InstanceKey,
        peer: UpstreamPeer,
        *,
        client_info: JSON,
    ) -> None:
        self.process = process
        self.key = key
        self._peer = peer
        self._client_info = client_info
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._listening: set[int] = set()
        self._closed = False
        self._close_reason = "closed"
        self.era: Era = "legacy"
        self.protocol_version = v.LEGACY_VERSIONS[0]
        self.server_info: JSON = {}
        self.capabilities: JSON = {}
        self.instructions: str | None = None
        self.last_activity = time.monotonic()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ Upstream

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        """Requests awaiting an answer, not counting long-lived listen streams (which
        must not keep an idle instance alive)."""
        return len(self._pending) - len(self._listening.intersection(self._pending))

    def request(self, method: str, params: JSON | None) -> _Pending:
        if self._closed:
            raise UpstreamClosed(f"{self.key}: {self._close_reason}")
        request_id = next(self._ids)
        pending = _Pending(self, request_id)
        self._pending[request_id] = pending
        if method == "subscriptions/listen":
            self._listening.add(request_id)
        if self.era == "modern":
            params = dict(params or {})
            meta = dict(params.get("_meta") or {})
            meta.setdefault(v.META_PROTOCOL_VERSION, self.protocol_version)
            meta.setdefault(v.META_CLIENT_INFO, self._client_info)
            meta.setdefault(v.META_CLIENT_CAPABILITIES, {})
            params["_meta"] = meta
        message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._write(message)
        return pending

    def notify(self, method: str, params: JSON | None) -> None:
        if self._closed:
            return
        message: JSON = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._write(message)

    async def close(self) -> None:
        self._fail_all("connection closed by the gateway")
        with contextlib.suppress(OSError, RuntimeError):
            self.process.stdin.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    # ------------------------------------------------------------ wire

    def _write(self, message: JSON) -> None:
        self.last_activity = time.monotonic()
        stdin = self.process.stdin
        try:
            stdin.write(rpc.dumps(message) + b"\n")
        except (OSError, RuntimeError) as exc:
            self._fail_all(f"write failed: {exc}")
            return
        transport = stdin.transport
        if transport.get_write_buffer_size() > _HIGH_WATER:
            self._spawn(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self.process.stdin.drain()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self) -> None:
        stdout = self.process.stdout
        reason = "server closed its stdout"
        try:
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:
                    # A line beyond the stream limit: the server broke framing; drop it.
                    log.warning("%s: oversized line from server skipped", self.key)
                    with contextlib.suppress(Exception):
                        await stdout.read(len(stdout._buffer))  # type: ignore[attr-defined]
                    continue
                if not line:
                    break
                self.last_activity = time.monotonic()
                self._dispatch(line)
        except asyncio.CancelledError:
            reason = "connection closed by the gateway"
            raise
        except Exception as exc:  # keep the gateway alive whatever the server sends
            reason = f"reader failed: {type(exc).__name__}"
            log.exception("%s: reader failed", self.key)
        finally:
            self._fail_all(reason)

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = rpc.loads(line)
        except rpc.RpcError:
            if line.strip():
                log.info("%s: non-JSON line on stdout: %r", self.key, line[:80])
            return
        if not isinstance(msg, dict):
            return
        if "method" in msg:
            if "id" in msg:
                self._spawn(self._answer(msg))
            else:
                try:
                    self._peer.on_notification(self.key, msg)
                except Exception:
                    log.exception("%s: notification handler failed", self.key)
            return
        rid = msg.get("id")
        pending = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if pending is not None and not pending._future.done():
            pending._future.set_result(msg)

    async def _answer(self, msg: JSON) -> None:
        try:
            body = await self._peer.on_request(self.key, msg)
        except Exception:
            log.exception("%s: server request handler failed", self.key)
            body = {"error": {"code": rpc.INTERNAL_ERROR, "message": "Gateway error"}}
        if not self._closed:
            self._write({"jsonrpc": "2.0", "id": msg["id"], **body})

    def _fail_all(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p._future.done():
                p._future.set_exception(UpstreamClosed(f"{self.key}: {reason}"))
                p._future.exception()  # retrieved: waiters re-raise it themselves
        try:
            self._peer.on_closed(self.key, reason)
        except Exception:
            log.exception("%s: close handler failed", self.key)
