"""The smallest real MCP server: standard library only, legacy era (``initialize``), one
tool ``hello`` that answers ``hello <name>``. It runs under any Python, including a bare
virtual environment without pip, so tests can jail it with whatever interpreter they
are about (one the jail cannot read, say). It never touches the network or the disk.
"""

import json
import sys
import time

PROTOCOL = "2025-06-18"
TOOL = {
    "name": "hello",
    "description": "Say hello.",
    "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
}


def answer(message: dict) -> dict | None:
    method = message.get("method")
    if "id" not in message:
        return None  # a notification (initialized, cancelled): nothing to say
    rid = message["id"]
    if method == "initialize":
        result = {
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        arguments = (message.get("params") or {}).get("arguments", {})
        name = arguments.get("name", "world")
        time.sleep(float(arguments.get("delay", 0)))  # a slow call (drain tests)
        result = {"content": [{"type": "text", "text": f"hello {name}"}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main(answer=answer) -> None:  # metaecho.py passes its own
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = answer(message) if isinstance(message, dict) else None
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
