"""A raw legacy (2025-06-18) Streamable HTTP client for attack tests, and RSS sampling.

Tests that play a slow or hostile client need the wire itself (open a stream and never
read it, answer a server's question by hand), which SDK clients hide. It must never hide
an HTTP error: every helper asserts the status it expects.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx

VERSION = "2025-06-18"


def open_session(
    client: httpx.Client, url: str, token: str, capabilities: dict | None = None
) -> dict[str, str]:
    """initialize + notifications/initialized; the headers that name the session."""
    h = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "attack-tests", "version": "1"},
        },
    }
    r = client.post(url, json=init, headers=h)
    assert r.status_code == 200, r.text
    h = dict(h, **{"Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": VERSION})
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert client.post(url, json=note, headers=h).status_code == 202
    return h


def call_body(rid: int, tool: str, arguments: dict, progress: str | None = None) -> dict:
    params: dict = {"name": tool, "arguments": arguments}
    if progress is not None:
        params["_meta"] = {"progressToken": progress}
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def sse_messages(response: httpx.Response) -> Iterator[dict]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's resident set in a thread; ``peak`` is the highest seen (KiB)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


def wait_for_log(path: Path, text: str, timeout: float) -> bool:
    """Wait (bounded) for a line in an instance log; True when it appeared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False
