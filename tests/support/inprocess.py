"""In-process MCP servers behind the real :class:`~gigmcp.core.launch.Launcher` seam, so
the supervisor, the router and the upstream connection run for real with no process,
pipe or jail: fast tests beside the ones that launch real servers.

A server here is a plain function from one JSON-RPC message to its reply (None for a
notification), plus whatever it chooses to send on its own through :meth:`Server.send`.
:class:`MemoryLauncher` hands the supervisor a process whose stdin, stdout and stderr
are real asyncio streams over in-memory transports: the supervisor, its log pump and
``ProcessTransport`` cannot tell it from a launched process. Never a stand-in for the
jail or the proxy: tests of those launch real processes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gigmcp.core.jsontypes import JSON
from gigmcp.core.launch import LaunchedProcess, LaunchSpec

Handler = Callable[["Server", JSON], JSON | None]
_PIDS = itertools.count(1_000_000)


class _Sink(asyncio.WriteTransport):
    """The write side of an in-memory pipe: bytes go to ``deliver`` at once."""

    def __init__(self, deliver: Callable[[bytes], None], closed: Callable[[], None]) -> None:
        super().__init__()
        self._deliver = deliver
        self._closed = closed
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            raise RuntimeError("write to a closed pipe")
        self._deliver(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._closed()

    def abort(self) -> None:
        self.close()


def _writer(deliver: Callable[[bytes], None], closed: Callable[[], None]) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    return asyncio.StreamWriter(_Sink(deliver, closed), protocol, reader, loop)


@dataclass(eq=False)
class Server:
    """One running in-process server: what it was launched with and what it received."""

    name: str
    spec: LaunchSpec
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    received: list[JSON] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)

    def send(self, message: JSON) -> None:
        """Write one message to the gateway, as the server would on stdout."""
        if not self.stdout.at_eof():
            self.stdout.feed_data(json.dumps(message).encode() + b"\n")

    def log(self, text: str) -> None:
        self.stderr.feed_data(text.encode() + b"\n")


class MemoryProcess:
    """:class:`~gigmcp.core.launch.LaunchedProcess` for an in-process server."""

    def __init__(self, name: str, spec: LaunchSpec, handler: Handler) -> None:
        self.pid = next(_PIDS)
        self.stdout = asyncio.StreamReader()
        self.stderr = asyncio.StreamReader()
        self.server = Server(name, spec, self.stdout, self.stderr)
        self._handler = handler
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stdin = _writer(self._received, lambda: self.exit(0))

    def _received(self, data: bytes) -> None:
        buf = self.server._buffer
        buf += data
        while (end := buf.find(b"\n")) >= 0:
            line = bytes(buf[:end])
            del buf[: end + 1]
            message = json.loads(line)
            self.server.received.append(message)
            reply = self._handler(self.server, message)
            if reply is not None:
                self.server.send(reply)

    def exit(self, status: int) -> None:
        """The server ends: its output closes and it exits with ``status``."""
        if self._exited.done():
            return
        self._exited.set_result(status)
        self.stdout.feed_eof()
        self.stderr.feed_eof()

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def terminate(self) -> None:
        self.exit(-signal.SIGTERM)

    def kill(self) -> None:
        self.exit(-signal.SIGKILL)

    def exit_reason(self) -> str | None:
        return None

    async def cleanup(self) -> None:
        return None


@dataclass
class MemoryLauncher:
    """A :class:`~gigmcp.core.launch.Launcher` whose processes are the handlers given, by
    server name; it keeps every process it launched, in order."""

    handlers: dict[str, Handler]
    launched: list[MemoryProcess] = field(default_factory=list)

    async def start(self) -> dict[str, list[str]]:
        return {}

    async def launch(self, spec: LaunchSpec) -> LaunchedProcess:
        name = spec.key.server_name
        if name not in self.handlers:
            raise OSError(f"no in-process server named {name!r}")
        process = MemoryProcess(name, spec, self.handlers[name])
        self.launched.append(process)
        return process

    async def explain(self, spec: LaunchSpec) -> str | None:
        return None

    async def aclose(self) -> None:
        return None

    def of(self, name: str) -> list[MemoryProcess]:
        return [p for p in self.launched if p.server.name == name]


def tools_server(
    tools: dict[str, Callable[[dict[str, Any]], str]], protocol: str = "2025-06-18"
) -> Handler:
    """A legacy-era server offering ``tools``: each maps its arguments to a text result."""

    def handle(server: Server, message: JSON) -> JSON | None:
        if "id" not in message:
            return None
        method, rid = message.get("method"), message["id"]
        params = message.get("params") or {}
        result: JSON
        if method == "initialize":
            result = {
                "protocolVersion": protocol,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": server.name, "version": "1"},
            }
        elif method == "tools/list":
            result = {
                "tools": [
                    {
                        "name": n,
                        "description": f"{n} of {server.name}",
                        "inputSchema": {"type": "object"},
                    }
                    for n in tools
                ]
            }
        elif method == "tools/call" and params.get("name") in tools:
            text = tools[params["name"]](params.get("arguments") or {})
            result = {"content": [{"type": "text", "text": text}]}
        elif method == "ping":
            result = {}
        else:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "not found"}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    return handle
