"""A small load balancer for the replica tests: each HTTP request to the next backend.

Real load balancers spread stateless requests per request, not per connection, and a
client keeps its connection alive; so this front is an HTTP proxy (uvicorn in a thread,
httpx to the backends) that picks the backend per request, strictly in turn, streams
the answer back (SSE included), and, like nginx's ``proxy_next_upstream error``, tries
the next backend when one refuses the connection (a killed replica). It records where
each request went, with its MCP method and whether it carried a ``requestState`` or a
task id, for the tests to assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import orjson
import uvicorn

from tests.support.gateway import free_port

_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"}


@dataclass(frozen=True)
class Hop:
    backend: int
    method: str | None
    continues: bool  # carried a requestState or named a task
    status: int


class RoundRobin:
    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.hops: list[Hop] = []
        self._next = 0
        self.port = free_port()
        self._client: httpx.AsyncClient | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, profile: str) -> str:
        return f"{self.base}/mcp/p/{profile}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, continues = _describe(body)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        path = scope["raw_path"].decode() + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=2))
        for _ in range(len(self.backends)):
            index = self._next
            self._next = (self._next + 1) % len(self.backends)
            request = self._client.build_request(
                scope["method"], self.backends[index] + path, headers=headers, content=body
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError:
                continue
            self.hops.append(Hop(index, method, continues, response.status_code))
            out = [
                (k.encode(), v.encode())
                for k, v in response.headers.items()
                if k.encode() not in _HOP
            ]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})  # fmt: skip
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (httpx.HTTPError, OSError):
                pass  # the backend died mid-answer: the client sees the stream end
            finally:
                await response.aclose()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"no backend answered"})

    def backends_of(self, method: str) -> list[int]:
        return [h.backend for h in self.hops if h.method == method]


def _describe(body: bytes) -> tuple[str | None, bool]:
    try:
        msg = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(msg, dict):
        return None, False
    params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
    assert isinstance(params, dict)
    return msg.get("method"), "requestState" in params or "taskId" in params


@contextlib.contextmanager
def round_robin(backends: list[str]) -> Iterator[RoundRobin]:
    front = RoundRobin(backends)
    server = uvicorn.Server(
        uvicorn.Config(
            front,
            host="127.0.0.1",
            port=front.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("the round-robin front did not start")
        time.sleep(0.02)
    try:
        yield front
    finally:
        server.should_exit = True
        thread.join(10)
        if front._client is not None:
            with contextlib.suppress(Exception):
                asyncio.run(front._client.aclose())


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.support.round_robin --port PORT BACKEND...``: the same front as
    a process of its own (bench/replicas.py runs it so that it does not share a GIL with
    the load generator), until SIGTERM or SIGINT."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("backends", nargs="+", help="base URLs, e.g. http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    front = RoundRobin(args.backends)
    front.port = args.port
    config = uvicorn.Config(
        front, host="127.0.0.1", port=front.port, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
