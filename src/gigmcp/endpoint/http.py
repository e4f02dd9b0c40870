"""ASGI plumbing of the MCP endpoint: the aliases, HTTP errors, plain answers and the
loop that writes an SSE stream.

Owns what every handler answers with: :class:`HttpError` (raised anywhere, written once
by the endpoint), a whole response, and the pump that writes queued SSE frames, with a
keep-alive comment when nothing else goes out, until the queue closes or the client
leaves. It must never write a traceback or anything but the body it is given, and never
let a client that went away raise into the handler that served it.
"""

from __future__ import annotations

import asyncio
import contextlib

from gigmcp.core.asgi import Receive, Send
from gigmcp.endpoint import sse
from gigmcp.endpoint.buffers import FrameQueue
from gigmcp.errors import ProtocolError
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.jsonrpc import RpcError

KEEPALIVE_SECONDS = 15.0


class HttpError(ProtocolError):
    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []


def rpc_http_error(status: int, err: RpcError, request_id: object = None) -> HttpError:
    return HttpError(status, rpc.dumps(err.response(request_id)))  # type: ignore[arg-type]


async def pump(receive: Receive, send: Send, queue: FrameQueue) -> None:
    """Write queued SSE frames until the queue closes or the client disconnects."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        while not watcher.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if watcher in done:
                    return
                await send({"type": "http.response.body", "body": sse.KEEPALIVE, "more_body": True})
                continue
            item = getter.result()
            if item is None:
                break
            await send({"type": "http.response.body", "body": item[0], "more_body": True})
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        return
    finally:
        watcher.cancel()


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    json: bool | None = None,
) -> None:
    out = list(headers or [])
    if body and (json or json is None):
        out.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})
