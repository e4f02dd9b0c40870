"""JSON-RPC 2.0 envelopes: parsing, classification, error objects.

Owns the wire-level shape of a message and the standard and MCP error codes. It never
validates method params against MCP models: the router forwards what it does not
need to understand untouched (DESIGN §3.4).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

import orjson

from gigmcp.core.jsontypes import JSON
from gigmcp.errors import ProtocolError

RequestId = str | int

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# Implementation-defined (legacy sub-range -32000..-32019): the gateway's own local errors.
REQUEST_TIMEOUT: Final = -32001
UPSTREAM_UNAVAILABLE: Final = -32003
REQUEST_CANCELLED: Final = -32004
# Reserved for the MCP specification (2026-07-28).
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
# Earlier revisions' "resource not found"; still accepted from legacy servers.
LEGACY_RESOURCE_NOT_FOUND: Final = -32002


class RpcError(ProtocolError):
    """A JSON-RPC error to answer with. ``message`` must never carry a secret."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> JSON:
        err: JSON = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    def response(self, request_id: RequestId | None) -> JSON:
        return {"jsonrpc": "2.0", "id": request_id, "error": self.to_error()}


class Kind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"


def loads(data: bytes | str) -> Any:
    """Parse JSON, mapping any failure to a -32700 error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RpcError(PARSE_ERROR, "Parse error: body is not valid JSON") from exc


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        # orjson refuses integers beyond 64 bits; the stdlib keeps them exact.
        import json

        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def classify(msg: Any) -> Kind:
    """Tell what a decoded message is, or raise -32600 for anything that is not JSON-RPC 2.0."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object")
    if "method" in msg:
        method = msg["method"]
        if not isinstance(method, str) or not method:
            raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string")
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            raise RpcError(INVALID_REQUEST, "Invalid Request: params must be an object")
        if "id" in msg:
            rid = msg["id"]
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or integer")
            return Kind.REQUEST
        return Kind.NOTIFICATION
    if "id" in msg and ("result" in msg or "error" in msg):
        return Kind.RESPONSE
    raise RpcError(INVALID_REQUEST, "Invalid Request: neither a request, notification nor response")


def error_response(request_id: RequestId | None, code: int, message: str, data: Any = None) -> JSON:
    return RpcError(code, message, data).response(request_id)
