"""The answer channel of one POST: a single JSON body, or an SSE stream when needed.

The gateway decides the content type late: a call that produces nothing but its result
is answered as ``application/json`` (cheapest for clients and for us); the first
request-scoped notification or server→client request switches the answer to an SSE
stream, on which the final response is the last event. Writes keep their order through
one writer task created only when the stream starts.

Legacy channels stamp event ids and keep events in the session's replay buffer so a
client may resume with ``Last-Event-ID``; when the client goes away the request goes on
(legacy disconnect is not cancellation) and its events wait in that buffer.

What waits for a slow client is bounded in bytes (endpoint/buffers.py): request-scoped
notifications (progress, log messages) are dropped when the stream's queue is full; the
final response and server→client requests never are.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from gigmcp.core.asgi import Send
from gigmcp.core.jsontypes import JSON
from gigmcp.endpoint import sse
from gigmcp.endpoint.buffers import BUFFER_BYTES, FrameQueue
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.jsonrpc import RpcError

if TYPE_CHECKING:
    from gigmcp.endpoint.sessions import LegacySession, ReplayStream


class ResponseChannel:
    def __init__(
        self,
        send: Send,
        *,
        accepts_sse: bool,
        extra_headers: list[tuple[bytes, bytes]],
        session: LegacySession | None = None,
        ask_timeout: float = 120.0,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self._send: Send | None = send
        self._accepts_sse = accepts_sse
        self._headers = extra_headers
        self._session = session
        self._ask_timeout = ask_timeout
        self._buffer = session.buffer_bytes if session is not None else buffer_bytes
        self._queue: FrameQueue | None = None
        self._writer: asyncio.Task[None] | None = None
        self._replay: ReplayStream | None = None
        self.started = False

    # ---------------------------------------------------------------- RequestSink

    @property
    def can_ask(self) -> bool:
        return self._session is not None and self._accepts_sse

    def notify(self, message: JSON) -> None:
        if not self._accepts_sse:
            # A client that only takes JSON gets request-scoped notifications on its
            # session's standalone stream, if it has one; otherwise there is nowhere to go.
            if self._session is not None:
                self._session.deliver(message)
            return
        self._push(rpc.dumps(message), essential=False)

    async def ask(self, method: str, params: JSON | None) -> JSON:
        session = self._session
        if session is None or not self._accepts_sse:
            raise RpcError(rpc.METHOD_NOT_FOUND, f"Client cannot answer {method} on this channel")
        request_id, answer = session.open_ask()
        message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._push(rpc.dumps(message), essential=True)
        try:
            async with asyncio.timeout(self._ask_timeout):
                response = await answer
        except TimeoutError as exc:
            raise RpcError(rpc.REQUEST_TIMEOUT, f"Client did not answer {method}") from exc
        finally:
            session.close_ask(request_id)
        if "error" in response:
            err = response["error"] if isinstance(response["error"], dict) else {}
            raise RpcError(
                int(err.get("code", rpc.INTERNAL_ERROR)),
                str(err.get("message", "")),
                err.get("data"),
            )
        result = response.get("result")
        return result if isinstance(result, dict) else {}

    # ---------------------------------------------------------------- streaming

    def _push(self, data: bytes, essential: bool) -> None:
        queue = self._start_stream()
        queue.put(data, essential=essential)

    def _start_stream(self) -> FrameQueue:
        if self._queue is None:
            self._queue = FrameQueue(self._buffer)
            if self._session is not None:
                self._replay = self._session.new_stream()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return self._queue

    async def _write_loop(self) -> None:
        assert self._queue is not None
        send = self._send
        try:
            if send is not None:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self._sse_headers()}
                )
                self.started = True
            while True:
                item = await self._queue.get()
                if item is None:
                    break
                data, essential = item
                frame = self._frame(data, essential)
                if send is not None:
                    try:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                    except OSError:
                        send = None  # client left; replay buffer keeps the rest
            if send is not None:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if self._replay is not None:
                self._replay.finish()

    def _frame(self, data: bytes, essential: bool) -> bytes:
        if self._replay is None:
            return sse.event(data)
        return self._replay.record(data, essential)

    def _sse_headers(self) -> list[tuple[bytes, bytes]]:
        return sse.SSE_HEADERS + self._headers

    async def finish(self, response: JSON, status: int = 200) -> None:
        """Send the final response: the last SSE event, or the whole JSON answer."""
        body = rpc.dumps(response)
        if self._queue is None:
            assert self._send is not None
            headers = [(b"content-type", b"application/json"), *self._headers]
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
            return
        self._queue.put(body, essential=True)
        self._queue.close()
        assert self._writer is not None
        await self._writer

    async def close_without_answer(self) -> None:
        """End the HTTP exchange of a request that will get no JSON-RPC answer (it was
        cancelled): an SSE stream that simply ends, or an empty 202 if none started."""
        if self._queue is not None:
            self._queue.close()
            assert self._writer is not None
            await self._writer
            return
        send, self._send = self._send, None
        if send is not None:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.start", "status": 202, "headers": self._headers})
                await send({"type": "http.response.body", "body": b""})
