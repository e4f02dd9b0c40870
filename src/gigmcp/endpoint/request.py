"""One authenticated HTTP request to a profile endpoint, as the handlers see it.

Owns what every handler needs and nothing else: the ASGI scope, ``receive`` and
``send``, the request headers, the grant of the bearer token that was checked (token,
user and profile) and the profile's hub; reading the body within the size limit; and
the sink for requests that have no channel to answer on. It is built only after the
token and the Origin were checked, so it must never exist for an unauthenticated
request, and it must never hold a token itself (the grant names it by id).
"""

from __future__ import annotations

from dataclasses import dataclass

from gigmcp.core.asgi import Receive, Scope, Send
from gigmcp.core.jsontypes import JSON
from gigmcp.core.views import TokenGrant
from gigmcp.endpoint.http import HttpError
from gigmcp.endpoint.security import json_error_body
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router.hub import ProfileHub


@dataclass(slots=True)
class Request:
    scope: Scope
    receive: Receive
    send: Send
    headers: dict[bytes, bytes]
    grant: TokenGrant
    hub: ProfileHub

    @property
    def accepts_sse(self) -> bool:
        accept = self.headers.get(b"accept", b"")
        return b"text/event-stream" in accept or b"*/*" in accept

    async def body(self, max_bytes: int) -> bytes:
        length = self.headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > max_bytes:
                raise _too_large(max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, b"")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(max_bytes: int) -> HttpError:
    return HttpError(
        413,
        json_error_body(rpc.INVALID_REQUEST, f"Request body larger than {max_bytes} bytes"),
    )


class _NullSink:
    can_ask = False

    def notify(self, message: JSON) -> None:
        return None

    async def ask(self, method: str, params: JSON | None) -> JSON:
        raise RpcError(rpc.METHOD_NOT_FOUND, "no channel")


NULL_SINK = _NullSink()
