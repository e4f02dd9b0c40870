"""Values MCP mirrors into HTTP headers (``Mcp-Name``, ``Mcp-Param-*``): decoding only."""

from __future__ import annotations

import base64
import binascii


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
