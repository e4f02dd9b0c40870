"""One JSON-RPC connection to an MCP server over its stdio (or any other byte
:class:`~gigmcp.upstream.transport.Transport`): newline-delimited messages.

Owns upstream request ids, the table of pending requests, and the reader that sorts what
the server says into responses, server→client requests and notifications. When the
server goes away every pending request fails at once with :class:`UpstreamClosed`; it
must never leave a caller waiting on a dead process, and never log message contents
beyond a short excerpt.

The server is untrusted and its memory limit (the jail's cgroup) does not cover what the
gateway holds for it, so this reader bounds it: one message may be at most
``max_message_bytes`` (a longer line ends the instance: it is killed, the reason logged,
and every pending call fails with :class:`MessageTooLarge`); at most
``max_server_requests`` server→client requests are served at once (more are answered
with a JSON-RPC error at once, never queued); and a server that stops reading its stdin
while the gateway keeps writing is ended before the unsent bytes pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from gigmcp.core import aio
from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.upstream.transport import Transport
from gigmcp.upstream.types import Era, MessageTooLarge, UpstreamClosed, UpstreamPeer

log = logging.getLogger(__name__)

# Above this many unsent bytes, writers wait for the pipe (backpressure); below it a
# write is fire-and-forget, which keeps the common small request at one syscall.
_HIGH_WATER = 1024 * 1024
# How much the reader takes from the pipe at a time; lines are framed here, not by the
# StreamReader, so its own limit never decides what a message may be.
_READ_CHUNK = 256 * 1024
# JSON-RPC "server error" range (-32000..-32099): a server→client request over the cap.
TOO_MANY_REQUESTS = -32005


@dataclass(frozen=True, slots=True)
class WireLimits:
    """What one server may make the gateway hold (GIG_MAX_MESSAGE_BYTES,
    GIG_MAX_SERVER_REQUESTS)."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_server_requests: int = 16

    @property
    def max_unsent_bytes(self) -> int:
        # Requests toward a server that does not read its stdin: several whole messages'
        # worth (a slow reader is not ended for a burst), then the instance ends.
        return max(64 * 1024 * 1024, 8 * self.max_message_bytes)


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
    """Implements :class:`gigmcp.upstream.types.Upstream` over a transport (the stdio of
    a launched process, or an in-memory pair)."""

    def __init__(
        self,
        transport: Transport,
        key: InstanceKey,
        peer: UpstreamPeer,
        *,
        client_info: JSON,
        limits: WireLimits | None = None,
    ) -> None:
        self.transport = transport
        self.limits = limits or WireLimits()
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
        self._tasks: set[asyncio.Task[None]] = set()
        # Server→client requests being served (each waits for a client, up to the
        # request timeout): at most limits.max_server_requests.
        self._answering: set[asyncio.Task[None]] = set()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

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
            self.transport.close()
        await aio.stop(self._reader)

    # ------------------------------------------------------------ wire

    def _write(self, message: JSON) -> None:
        self.last_activity = time.monotonic()
        try:
            self.transport.write(rpc.dumps(message) + b"\n")
        except (OSError, RuntimeError) as exc:
            self._fail_all(f"write failed: {exc}")
            return
        unsent = self.transport.unsent()
        if unsent > self.limits.max_unsent_bytes:
            self._end(f"server does not read its stdin ({unsent} bytes unsent)")
        elif unsent > _HIGH_WATER and not any(t.get_name() == "drain" for t in self._tasks):
            self._spawn(self._drain(), "drain")

    async def _drain(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self.transport.drain()

    def _spawn(self, coro: Any, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end(self, reason: str, error: type[UpstreamClosed] = UpstreamClosed) -> None:
        """The server broke a limit: fail everything pending and kill the process (the
        supervisor sees it exit, logs it and starts a fresh one when next needed)."""
        log.warning("%s: %s; ending the instance", self.key, reason)
        self._fail_all(reason, error)
        with contextlib.suppress(Exception):
            self.transport.kill()

    async def _read_loop(self) -> None:
        transport = self.transport
        limit = self.limits.max_message_bytes
        reason = "server closed its stdout"
        # The unfinished line so far, in pieces: never more than ``limit`` bytes.
        partial: list[bytes] = []
        held = 0
        try:
            while True:
                chunk = await transport.read(_READ_CHUNK)
                if not chunk:
                    break
                self.last_activity = time.monotonic()
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    if held + end - start > limit:
                        break
                    if partial:
                        partial.append(chunk[start:end])
                        line = b"".join(partial)
                        partial.clear()
                        held = 0
                    else:
                        line = chunk[start:end]
                    start = end + 1
                    self._dispatch(line)
                    if self._closed:
                        return  # a limit ended the instance while handling the line
                else:
                    held += len(chunk) - start
                    if held <= limit:
                        if start < len(chunk):
                            partial.append(chunk[start:])
                        continue
                # A line longer than the limit: the server broke framing or is hostile.
                # Skipping it would mean reading (and holding) it all; end the instance.
                partial.clear()
                reason = f"server sent a message larger than {limit} bytes"
                self._end(reason, MessageTooLarge)
                return
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
                self._serve(msg)
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

    def _serve(self, msg: JSON) -> None:
        cap = self.limits.max_server_requests
        if len(self._answering) >= cap:
            # Refused at once rather than queued: a queue would hold what the cap is for.
            self._write(
                {
                    "jsonrpc": "2.0",
                    "id": msg["id"],
                    "error": {
                        "code": TOO_MANY_REQUESTS,
                        "message": f"Too many requests to the client at once (at most {cap})",
                    },
                }
            )
            return
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, msg: JSON) -> None:
        try:
            body = await self._peer.on_request(self.key, msg)
        except Exception:
            log.exception("%s: server request handler failed", self.key)
            body = {"error": {"code": rpc.INTERNAL_ERROR, "message": "Gateway error"}}
        if not self._closed:
            self._write({"jsonrpc": "2.0", "id": msg["id"], **body})

    def _fail_all(self, reason: str, error: type[UpstreamClosed] = UpstreamClosed) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        for task in list(self._answering):
            task.cancel()  # nobody is left to hear the client's answers
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p._future.done():
                p._future.set_exception(error(f"{self.key}: {reason}"))
                p._future.exception()  # retrieved: waiters re-raise it themselves
        try:
            self._peer.on_closed(self.key, reason)
        except Exception:
            log.exception("%s: close handler failed", self.key)
