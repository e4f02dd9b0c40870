"""The upstream API of the egress benchmark: uvicorn (httptools) over TLS.

``/small`` answers 32 bytes; ``/big?n=N`` streams N bytes in 1 MiB chunks. Run inside
the benchmark's namespace: ``python -m bench.servers.https_upstream HOST PORT CERT KEY``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn

SMALL = b'{"ok": true, "pad": "........"}\n'
CHUNK = b"x" * (1 << 20)


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        n = int(parse_qs(scope["query_string"].decode()).get("n", ["1048576"])[0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n).encode())]})  # fmt: skip
        while n > 0:
            part = CHUNK[: min(n, len(CHUNK))]
            n -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": n > 0})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(SMALL)).encode()),
                            (b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": SMALL})


if __name__ == "__main__":
    host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    uvicorn.run(app, host=host, port=port, ssl_certfile=cert, ssl_keyfile=key,
                loop="uvloop", http="httptools", log_level="warning", access_log=False)  # fmt: skip
