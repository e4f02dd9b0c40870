"""Values MCP mirrors into HTTP headers (``Mcp-Name``, ``Mcp-Param-*``): which param a
method mirrors into ``Mcp-Name``, and decoding."""

from __future__ import annotations

import base64
import binascii

# 2026-07-28: methods whose name the transport mirrors into Mcp-Name, and the param it
# comes from (the tasks extension's: the task id, for routing to its replica).
NAME_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}


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
