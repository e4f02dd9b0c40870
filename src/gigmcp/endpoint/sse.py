"""Server-Sent Events framing for MCP streams. Bytes in, bytes out; no I/O."""

from __future__ import annotations

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    # Reverse proxies such as nginx must not hold events back (spec: SHOULD).
    (b"x-accel-buffering", b"no"),
]

KEEPALIVE = b":\r\n\r\n"


def event(data: bytes, event_id: str | None = None) -> bytes:
    """One ``message`` event. JSON from orjson has no raw newlines, so one data line."""
    head = b"event: message\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"
