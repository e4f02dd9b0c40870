"""Opaque pagination cursors that span every page of every server in a profile.

A cursor names the server to continue with and that server's own cursor. It is
authenticated with a per-gateway key so that a client cannot hand the gateway an
arbitrary upstream cursor; a forged or stale cursor is an invalid-params error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import orjson

from gigmcp.mcp.jsonrpc import INVALID_PARAMS, RpcError

_TAG = 12


@dataclass(frozen=True, slots=True)
class Position:
    server_index: int
    upstream_cursor: str | None


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, kind: str, body: bytes) -> bytes:
        return hmac.new(self._key, kind.encode() + b"\0" + body, hashlib.sha256).digest()[:_TAG]

    def encode(self, kind: str, pos: Position) -> str:
        body = orjson.dumps([pos.server_index, pos.upstream_cursor])
        return base64.urlsafe_b64encode(self._tag(kind, body) + body).decode().rstrip("=")

    def decode(self, kind: str, cursor: object) -> Position:
        if not isinstance(cursor, str) or len(cursor) > 4096:
            raise RpcError(INVALID_PARAMS, "Invalid params: malformed cursor")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            tag, body = raw[:_TAG], raw[_TAG:]
            if not hmac.compare_digest(tag, self._tag(kind, body)):
                raise ValueError("tag")
            index, upstream = orjson.loads(body)
            if not isinstance(index, int) or not (upstream is None or isinstance(upstream, str)):
                raise ValueError("shape")
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown or tampered cursor") from exc
        return Position(index, upstream)
