"""A real MCP server that shows what the gateway forwarded to it: standard library only,
legacy era (``initialize``), for the observability tests.

Tools: ``meta`` answers with the ``params._meta`` of the call as it arrived (JSON text)
and writes it to stderr (the instance log); ``fail`` answers with ``isError``. It never
touches the network or the disk; its line loop is tiny.py's.
"""

import json
import sys

PROTOCOL = "2025-06-18"
TOOLS = [
    {"name": "meta", "description": "Echo the call's _meta.", "inputSchema": {"type": "object"}},
    {"name": "fail", "description": "Fail as a tool.", "inputSchema": {"type": "object"}},
]


def answer(message: dict) -> dict | None:
    method = message.get("method")
    if "id" not in message:
        return None
    rid = message["id"]
    params = message.get("params") or {}
    if method == "initialize":
        result = {
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "metaecho", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call" and params.get("name") == "meta":
        meta = params.get("_meta") or {}
        sys.stderr.write(f"metaecho: _meta {json.dumps(meta, sort_keys=True)}\n")
        sys.stderr.flush()
        result = {"content": [{"type": "text", "text": json.dumps(meta)}]}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "no"}], "isError": True}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


if __name__ == "__main__":
    from tiny import main  # the same line loop, beside this file

    main(answer)
