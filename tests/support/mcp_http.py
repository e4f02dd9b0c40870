"""Plain HTTP requests to a gateway's MCP endpoint, as a modern (2026-07-28) client sends them.

``modern_headers`` and ``modern_body`` are a request's headers and JSON-RPC body with the
protocol revision in both places (``MCP-Protocol-Version`` and ``_meta``); ``post``
sends one to a profile's endpoint. For tests that must see the HTTP answer itself (a
status, a header) rather than what an SDK makes of it: nothing is checked here.
"""

from __future__ import annotations

import httpx2 as httpx

from tests.support.gateway import GatewayProc

MODERN = "2026-07-28"


def modern_headers(token: str | None, method: str, name: str | None = None) -> dict[str, str]:
    h = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if name is not None:
        h["Mcp-Name"] = name
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return h


def modern_body(method: str, params: dict | None = None, rid: int = 1) -> dict:
    p = dict(params or {})
    p["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "attack-tests", "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": p}


def post(gw: GatewayProc, profile: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url(profile), json=body, headers=headers, timeout=30)
