"""Checks made before a request reaches the router: bearer token, Origin, header values.

Owns the HTTP-facing refusal answers (401/403/413). It must never echo a presented token
and never start a server: nothing here knows servers exist.
"""

from __future__ import annotations

import base64
import binascii

from gigmcp.mcp.jsonrpc import dumps, error_response

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


def decode_header_value(raw: bytes) -> str | None:
    """Decode an ``Mcp-Name``/``Mcp-Param-*`` value, honouring the base64 sentinel form."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith("=?base64?") and text.endswith("?="):
        try:
            return base64.b64decode(text[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    if any(ord(c) < 0x20 and c != "\t" for c in text):
        return None
    return text


def json_error_body(code: int, message: str, request_id: object = None) -> bytes:
    return dumps(error_response(request_id, code, message))  # type: ignore[arg-type]
