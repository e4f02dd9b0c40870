"""The engine's JSON-RPC side, byte for byte: malformed input, errors, versions, cancel.

The SDK's client only sends well-formed messages, so these tests write raw lines to a
real engine subprocess (started as the jail starts it) and read its stdout line by
line; every line it writes must be a JSON-RPC message.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.toolspec_demo import demo_env, demo_input
from tests.support.toolspec_lab import Pki, Upstream
from tests.support.toolspec_session import jail_command, write_input

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


class RawEngine:
    def __init__(self, doc: dict[str, Any], env: dict[str, str], folder: Path) -> None:
        self.proc = subprocess.Popen(
            jail_command(write_input(folder, doc)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            assert line.endswith(b"\n")
            self.lines.put(json.loads(line))  # anything but JSON fails the test
        self.lines.put(None)

    def write(self, data: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        raw = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        message = self.lines.get(timeout=timeout)
        assert message is not None, "the engine closed stdout"
        return message

    def request(self, rid: int | str, method: str, params: Any = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.write(message)
        return self.recv()

    def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        params = {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        answer = self.request("init", "initialize", params)
        self.write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode()
        return code


@pytest.fixture
def raw(upstream: Upstream, pki: Pki, tmp_path: Path) -> Any:
    engine = RawEngine(demo_input(upstream.port), demo_env(pki), tmp_path)
    yield engine
    if engine.proc.poll() is None:
        engine.proc.kill()
        engine.proc.wait()


@pytest.mark.parametrize(
    ("asked", "answered"),
    [*((v, v) for v in VERSIONS), ("2026-07-28", "2025-11-25"), ("1999-01-01", "2025-11-25")],
)
def test_initialize_negotiates_the_version(raw: RawEngine, asked: str, answered: str) -> None:
    answer = raw.initialize(asked)
    assert answer["id"] == "init"
    assert answer["result"] == {
        "protocolVersion": answered,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "demo", "version": "1.2.3"},
    }
    assert raw.close() == 0


def test_json_rpc_errors(raw: RawEngine) -> None:
    raw.initialize()

    def error(data: bytes | dict[str, Any]) -> tuple[Any, int, str]:
        raw.write(data)
        answer = raw.recv()
        assert answer["jsonrpc"] == "2.0"
        assert "result" not in answer
        return answer["id"], answer["error"]["code"], answer["error"]["message"]

    assert error(b"not json\n") == (None, -32700, "Parse error: the line is not a JSON text")
    assert error(b'{"jsonrpc":"2.0","id":1,"method":"ping"\n')[1] == -32700
    assert error(b'{"jsonrpc":"2.0","id":1,"method":"ping","x":NaN}\n')[1] == -32700
    assert error(b"[1, 2]\n") == (None, -32600, "Invalid Request: batches are not supported")
    assert error(b'"text"\n') == (None, -32600, "Invalid Request: not a JSON-RPC message")
    req = {"jsonrpc": "2.0", "id": 5, "method": "resources/list"}
    assert error(req) == (5, -32601, "Method not found: resources/list")
    req = {"jsonrpc": "2.0", "id": 6, "method": "server/discover"}
    assert error(req) == (6, -32601, "Method not found: server/discover")
    assert error({"jsonrpc": "1.0", "id": 7, "method": "ping"}) == (7, -32600, "Invalid Request")
    assert error({"jsonrpc": "2.0", "id": True, "method": "ping"}) == (
        None,
        -32600,
        "Invalid Request",
    )
    assert error({"jsonrpc": "2.0", "id": 8, "method": 3}) == (8, -32600, "Invalid Request")

    def call(rid: int, params: Any) -> tuple[Any, int, str]:
        return error({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})

    assert call(9, [1]) == (9, -32602, "Invalid params: params must be an object")
    assert call(10, {}) == (10, -32602, "Invalid params: name must be a string")
    assert call(11, {"name": "nope"}) == (11, -32602, "Unknown tool: nope")
    assert call(12, {"name": "search", "arguments": [1]}) == (
        12,
        -32602,
        "Invalid params: arguments must be an object",
    )
    init = {"jsonrpc": "2.0", "id": 13, "method": "initialize", "params": {}}
    assert error(init) == (13, -32602, "Invalid params: protocolVersion must be a string")
    listing = {"jsonrpc": "2.0", "id": 14, "method": "tools/list", "params": {"cursor": "abc"}}
    assert error(listing) == (14, -32602, "Invalid params: unknown cursor")

    # Notifications, answers and blank lines get no answer: the next line is the ping's.
    raw.write({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {}})
    raw.write({"jsonrpc": "2.0", "id": 99, "result": {}})
    raw.write({"jsonrpc": "2.0", "method": 5})
    raw.write(b"\n   \n")
    assert raw.request("s-1", "ping") == {"jsonrpc": "2.0", "id": "s-1", "result": {}}
    assert raw.close() == 0


def test_an_oversized_message_is_refused_and_the_loop_goes_on(raw: RawEngine) -> None:
    raw.initialize()
    huge = (
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (9 * 2**20) + b'"}}\n'
    )
    writer = threading.Thread(target=raw.write, args=(huge,))
    writer.start()
    answer = raw.recv()
    writer.join()
    assert answer["id"] is None
    assert answer["error"] == {"code": -32600, "message": "message longer than 8388608 bytes"}
    assert raw.request(2, "ping")["result"] == {}
    assert raw.close() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_what_each_version_gets(raw: RawEngine, upstream: Upstream, version: str) -> None:
    raw.initialize(version)
    tools = raw.request(1, "tools/list")["result"]["tools"]
    search = next(t for t in tools if t["name"] == "search")
    remove = next(t for t in tools if t["name"] == "remove_item")
    if version == "2024-11-05":
        assert "annotations" not in search
    else:
        assert search["annotations"] == {"readOnlyHint": True, "openWorldHint": True}
        assert remove["annotations"] == {
            "readOnlyHint": False,
            "openWorldHint": True,
            "idempotentHint": True,
        }
    result = raw.request(2, "tools/call", {"name": "search", "arguments": {"q": "x"}})["result"]
    assert json.loads(result["content"][0]["text"])["path"] == "/search"
    if version in ("2025-06-18", "2025-11-25"):
        assert result["structuredContent"] == {"ok": True, "method": "GET", "path": "/search"}
    else:
        assert "structuredContent" not in result
    assert "isError" not in result
    assert raw.close() == 0


def test_a_cancelled_call_is_not_answered(raw: RawEngine, upstream: Upstream) -> None:
    upstream.gate = threading.Event()  # call 50 runs until the test lets it end
    raw.initialize()
    raw.write(
        {
            "jsonrpc": "2.0",
            "id": 50,
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 0}},
        }
    )
    assert upstream.wait_seen("/slow/0"), "call 50 never reached the upstream"
    raw.write({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 50}})
    # Lines are read in order: the answer to the ping means the cancel was read too.
    assert raw.request(51, "ping")["id"] == 51
    upstream.gate.set()  # call 50 ends now, cancelled
    answer = raw.request(52, "tools/call", {"name": "search", "arguments": {"q": "x"}})
    assert answer["id"] == 52  # not 50: that answer was dropped
    assert [s.path for s in upstream.seen] == ["/slow/0", "/search"]
    assert raw.close() == 0
    assert raw.lines.get(timeout=5) is None  # nothing else was written


def test_stdin_closing_ends_the_engine_after_calls_under_way(raw: RawEngine) -> None:
    raw.initialize()
    raw.write(
        {
            "jsonrpc": "2.0",
            "id": 60,
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 0.5}},
        }
    )
    assert raw.close() == 0  # it ended (close() waits 10 s at most) ...
    answer = raw.recv()  # ... and only after answering the call under way
    assert answer["id"] == 60
    assert answer["result"]["structuredContent"] == {"slow": True}
    assert "serving demo@1.2.3: 13 tools, 2 credential header(s)" in raw.stderr
