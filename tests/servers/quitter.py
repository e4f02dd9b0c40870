"""A real MCP server (standard library only, legacy era) that leaves at the worst moment:
its one tool ``ask`` answers with an ``input_required`` result — a question for the
client — and the server exits as soon as the gateway has taken that answer out of the
pipe. The gateway is then waiting for the client's answer, holding a connection that
has closed; the test decides when the client answers (after the gateway logged the
exit), so the gateway's retry meets the closed connection every time, without a sleep.
It never touches the network or the disk.

Why wait for the pipe to empty: a server that exits at once races its own answer — the
gateway may notice the exit before it reads the answer, and fail the call there.
"""

import fcntl
import json
import struct
import sys
import termios
import time


def _unread(fd: int) -> int:
    """Bytes written to this pipe that its reader has not taken yet."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


PROTOCOL = "2025-06-18"
TOOL = {"name": "ask", "description": "Ask, then leave.", "inputSchema": {"type": "object"}}
QUESTION = {
    "method": "elicitation/create",
    "params": {
        "message": "Go on?",
        "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
}


def main() -> None:
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "id" not in message:
            continue  # a notification (initialized, cancelled): nothing to say
        method, rid = message.get("method"), message["id"]
        leave = False
        if method == "initialize":
            result = {
                "protocolVersion": PROTOCOL,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "quitter", "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": [TOOL]}
        elif method == "tools/call":
            result = {"resultType": "input_required", "inputRequests": {"go": QUESTION},
                      "requestState": "asked"}  # fmt: skip
            leave = True
        else:
            result = {}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}) + "\n")
        sys.stdout.flush()
        if leave:
            # Polled, not timed: the gateway reads as soon as it can; this only asks.
            while _unread(sys.stdout.fileno()):
                time.sleep(0.01)
            return  # stdout closes with the process


if __name__ == "__main__":
    main()
