"""A real MCP server (standard library only, legacy era) whose resources can be
subscribed to, for the subscription tests: it says on stderr (the instance log) every
``resources/subscribe`` and ``resources/unsubscribe`` it receives, so a test can see what
the gateway did upstream, and its one tool ``publish`` sends
``notifications/resources/updated`` for a URI only while that URI is subscribed, as a
real server does, answering ``sent`` or ``not subscribed``. Any URI may be subscribed:
each test picks its own. It never touches the network or the disk.
"""

import json
import sys

PROTOCOL = "2025-06-18"
TOOL = {
    "name": "publish",
    "description": "Say that a resource changed, if anyone subscribed to it.",
    "inputSchema": {"type": "object", "properties": {"uri": {"type": "string"}}},
}
subscribed: set[str] = set()


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    sys.stderr.write(f"bulletin: {text}\n")
    sys.stderr.flush()


def answer(message: dict) -> dict | None:
    method = message.get("method")
    if "id" not in message:
        return None  # a notification (initialized, cancelled): nothing to say
    rid = message["id"]
    params = message.get("params") or {}
    if method == "initialize":
        result: dict = {
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}, "resources": {"subscribe": True}},
            "serverInfo": {"name": "bulletin", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "resources/list":
        result = {"resources": []}
    elif method == "resources/subscribe":
        subscribed.add(params["uri"])
        say(f"subscribe {params['uri']}")
        result = {}
    elif method == "resources/unsubscribe":
        subscribed.discard(params["uri"])
        say(f"unsubscribe {params['uri']}")
        result = {}
    elif method == "tools/call":
        uri = params.get("arguments", {}).get("uri", "")
        text = "not subscribed"
        if uri in subscribed:
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/resources/updated",
                    "params": {"uri": uri},
                }
            )
            text = "sent"
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main() -> None:
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = answer(message) if isinstance(message, dict) else None
        if reply is not None:
            send(reply)


if __name__ == "__main__":
    main()
