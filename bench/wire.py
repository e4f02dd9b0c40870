"""JSON-RPC messages the load generator sends, and the checks every answer must pass.

Owns the exact bytes of each benchmark request (legacy and 2026-07-28 forms) and the
verdict on each answer: the id is the one sent, the text is exactly the size asked and
carries the nonce at both ends. It must never accept an answer it did not verify: a
wrong answer is an error, never a fast success.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import orjson

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
CLIENT_INFO = {"name": "gigmcp-bench", "version": "1.0"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}


class WrongAnswer(Exception):
    """The system under test answered, but not what was asked."""


class Ids:
    """Process-wide unique request ids: an answer can only match its own request."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def __call__(self) -> int:
        return next(self._next)


def nonce() -> str:
    return os.urandom(8).hex()


@dataclass(frozen=True)
class Call:
    """One tools/call to the benchmark server's ``blob`` tool."""

    id: int
    tool: str
    size: int
    nonce: str

    def body(self, modern: bool) -> bytes:
        params: dict[str, Any] = {
            "name": self.tool,
            "arguments": {"size": self.size, "nonce": self.nonce},
        }
        if modern:
            params["_meta"] = MODERN_META
        message = {"jsonrpc": "2.0", "id": self.id, "method": "tools/call", "params": params}
        return orjson.dumps(message)

    def check(self, message: dict[str, Any]) -> None:
        if message.get("id") != self.id:
            raise WrongAnswer(f"answer id {message.get('id')!r} for request {self.id}")
        result = message.get("result")
        if not isinstance(result, dict):
            raise WrongAnswer(f"no result: {str(message.get('error'))[:200]}")
        if result.get("isError"):
            raise WrongAnswer(f"tool error: {str(result.get('content'))[:200]}")
        try:
            text = result["content"][0]["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise WrongAnswer(f"no text content ({exc})") from None
        if len(text) != self.size or not text.isascii():
            raise WrongAnswer(f"text of {len(text)} chars, asked {self.size} ASCII bytes")
        if not (text.startswith(self.nonce) and text.endswith(self.nonce)):
            raise WrongAnswer("nonce not echoed")


def request(req_id: int | None, method: str, params: dict[str, Any] | None, modern: bool) -> bytes:
    """A JSON-RPC request (or a notification when ``req_id`` is None)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if req_id is not None:
        message["id"] = req_id
    if modern:
        params = dict(params or {}, _meta=MODERN_META)
    if params is not None:
        message["params"] = params
    return orjson.dumps(message)


def initialize(req_id: int) -> bytes:
    return request(
        req_id,
        "initialize",
        {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
        modern=False,
    )


INITIALIZED = request(None, "notifications/initialized", None, modern=False)


def check_result(message: dict[str, Any], req_id: int) -> dict[str, Any]:
    """The result of the answer to ``req_id``, or WrongAnswer."""
    if message.get("id") != req_id:
        raise WrongAnswer(f"answer id {message.get('id')!r} for request {req_id}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise WrongAnswer(f"no result: {str(message.get('error'))[:200]}")
    return result


def tool_names(result: dict[str, Any]) -> list[str]:
    tools = result.get("tools")
    if not isinstance(tools, list):
        raise WrongAnswer("tools/list answer has no tools array")
    return [str(t.get("name")) for t in tools]
