"""A hostile MCP server (legacy stdio, standard library only) for the gateway's memory tests.

It speaks just enough MCP to be started and called, then attacks the gateway's memory:

``flood``     writes ``count`` notifications of ``size`` bytes each, as fast as the pipe
              takes them: ``notifications/message`` (broadcast to listening sessions) and
              ``notifications/progress`` for the call's progress token (with
              ``kind: "list_changed"``: tiny ``notifications/tools/list_changed``
              instead), then says ``flooder: flood done`` on stderr (the instance log)
              and answers.
``oversize``  writes one line of ``size`` bytes (a single JSON-RPC message far over any
              sane limit), then answers.
``ask``       sends ``count`` ``sampling/createMessage`` requests at once and answers with
              how many of them the gateway refused at once (and with which codes).

It runs inside a jail like any installed server; it must never need anything outside the
standard library.
"""

from __future__ import annotations

import json
import sys

PROTOCOL = "2025-06-18"
out = sys.stdout.buffer
inp = sys.stdin.buffer

TOOLS = [
    {
        "name": name,
        "description": name,
        "inputSchema": {"type": "object", "additionalProperties": True},
    }
    for name in ("flood", "oversize", "ask")
]


def send(message: dict) -> None:
    out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    out.flush()


def result(rid: object, text: str) -> None:
    send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}})


def flood(rid: object, args: dict, meta: dict) -> None:
    count = int(args.get("count", 100))
    size = int(args.get("size", 1 << 20))
    token = meta.get("progressToken")
    if args.get("kind") == "list_changed":
        note = b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n'
        for _ in range(count // 1000):
            out.write(note * 1000)
        out.flush()
        sys.stderr.write("flooder: flood done\n")
        sys.stderr.flush()
        result(rid, f"flooded {count}")
        return
    blob = "x" * size
    log_line = json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "error", "logger": "flood", "data": blob},
        },
        separators=(",", ":"),
    ).encode()
    progress_line = b""
    if token is not None:
        progress_line = json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "message": blob},
            },
            separators=(",", ":"),
        ).encode()
    for i in range(count):
        out.write((progress_line if progress_line and i % 2 else log_line) + b"\n")
        out.flush()
    sys.stderr.write("flooder: flood done\n")
    sys.stderr.flush()
    result(rid, f"flooded {count}")


def oversize(rid: object, args: dict) -> None:
    size = int(args.get("size", 256 << 20))
    chunk = b"x" * (1 << 20)
    out.write(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"')
    written = 0
    while written < size:
        out.write(chunk)
        written += len(chunk)
    out.write(b'"}}\n')
    out.flush()
    sys.stderr.write("flooder: oversize done\n")
    sys.stderr.flush()
    result(rid, f"oversize {size}")


def ask(rid: object, args: dict) -> None:
    count = int(args.get("count", 100))
    batch = b"".join(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": f"ask-{i}",
                "method": "sampling/createMessage",
                "params": {"messages": [], "maxTokens": 1},
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )
    out.write(batch)
    out.flush()
    answered = 0
    codes: dict[str, int] = {}
    while answered < count:
        line = inp.readline()
        if not line:
            return
        msg = json.loads(line)
        if not str(msg.get("id", "")).startswith("ask-") or "method" in msg:
            continue  # a notification, or something else the gateway said meanwhile
        answered += 1
        if "error" in msg:
            code = str(msg["error"].get("code"))
            codes[code] = codes.get(code, 0) + 1
    result(rid, json.dumps({"answered": answered, "errors": codes}))


def main() -> None:
    for line in inp:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method = msg.get("method")
        rid = msg.get("id")
        params = msg.get("params") or {}
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "result": {
                        "protocolVersion": PROTOCOL,
                        "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                        "serverInfo": {"name": "flooder", "version": "1"},
                    },
                }
            )
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            name = params.get("name")
            args = params.get("arguments") or {}
            meta = params.get("_meta") or {}
            if name == "flood":
                flood(rid, args, meta)
            elif name == "oversize":
                oversize(rid, args)
            elif name == "ask":
                ask(rid, args)
            else:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "?"}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
        elif rid is not None and method is not None:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": method}})


if __name__ == "__main__":
    main()
