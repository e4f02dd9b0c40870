"""Checks made before a request reaches the router: bearer token, Origin, header values.

Owns the HTTP-facing refusal answers (401/403/413). It must never echo a presented token
and never start a server: nothing here knows servers exist.
"""

from __future__ import annotations

from gigmcp.mcp.headers import decode_header_value
from gigmcp.mcp.jsonrpc import dumps, error_response

__all__ = ["bearer", "decode_header_value", "json_error_body", "origin_allowed"]

Headers = dict[bytes, bytes]


def bearer(headers: Headers) -> str | None:
    value = headers.get(b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def origin_allowed(headers: Headers, allowed: frozenset[str]) -> bool:
    """DNS-rebinding guard: a request from a browser page carries Origin; refuse every
    origin that was not configured. Non-browser clients send none."""
    origin = headers.get(b"origin")
    if origin is None:
        return True
    return origin.decode("latin-1") in allowed


def json_error_body(code: int, message: str, request_id: object = None) -> bytes:
    return dumps(error_response(request_id, code, message))  # type: ignore[arg-type]
