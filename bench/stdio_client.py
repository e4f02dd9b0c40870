"""A lean JSON-RPC client over stdio: the "direct" arm, with no transport in between.

Owns one child process and its pipes: newline-delimited JSON out, answers matched to
requests by id, any number in flight at once. Lines are cut in the pipe protocol itself
(each byte is searched once, a line is joined once), so a 1 MB answer costs the client
little and the baseline measures the server, not this client. It must never let a
request wait forever: a dead child fails every pending request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bench import procs, wire

PIPE_SIZE = 1 << 20  # fewer wake-ups per large answer; the kernel caps it at pipe-max-size


class _Lines(asyncio.Protocol):
    def __init__(self, on_line: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self.on_line = on_line
        self.on_eof = on_eof
        self.parts: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            piece = data[start:end]
            if self.parts:
                self.parts.append(piece)
                piece = b"".join(self.parts)
                self.parts = []
            if piece:
                self.on_line(piece)
            start = end + 1
        if start < len(data):
            self.parts.append(data[start:] if start else data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_eof()


class StdioClient:
    def __init__(self, argv: Sequence[str], cpus: set[int], ids: wire.Ids) -> None:
        self.argv = list(argv)
        self.cpus = cpus
        self.ids = ids
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closed = False
        self.stray = 0  # answers that matched no pending request: counted as errors

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, modern: bool = False) -> None:
        loop = asyncio.get_running_loop()
        # Spawned on the loop's own thread on purpose: the parent-death signal set in
        # preexec follows the thread that forked, and this one lives as long as the run.
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=procs.preexec(self.cpus),
        )
        procs.register_pgid(self.proc.pid)
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        await loop.connect_read_pipe(lambda: _Lines(self._on_line, self._on_eof), self.proc.stdout)
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, self.proc.stdin)
        self._writer = transport
        if not modern:
            req_id = self.ids()
            wire.check_result(await self.send(req_id, wire.initialize(req_id)), req_id)
            self.notify(wire.INITIALIZED)

    def _on_line(self, line: bytes) -> None:
        message = orjson.loads(line)
        future = self._pending.pop(message.get("id"), None)
        if future is None:
            if "id" in message and "method" not in message:
                self.stray += 1
            return
        if not future.done():
            future.set_result(message)

    def _on_eof(self) -> None:
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(wire.WrongAnswer("server closed its stdout"))
        self._pending.clear()

    def notify(self, body: bytes) -> None:
        assert self._writer is not None
        self._writer.write(body + b"\n")

    async def send(self, req_id: int, body: bytes) -> dict[str, Any]:
        """Send a request and wait for its answer (the caller bounds the wait)."""
        if self._closed or self._writer is None:
            raise wire.WrongAnswer("server is gone")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        self._writer.write(body + b"\n")
        try:
            return await future
        finally:
            self._pending.pop(req_id, None)

    async def call(self, call: wire.Call, modern: bool = False) -> None:
        call.check(await self.send(call.id, call.body(modern)))

    async def close(self) -> None:
        if self.proc is None:
            return
        if self._writer is not None:
            # End of input is how a stdio MCP server is asked to exit.
            self._writer.close()
            self._writer = None
        try:
            await asyncio.to_thread(self.proc.wait, 3)
        except subprocess.TimeoutExpired:
            await asyncio.to_thread(procs.stop_group, self.proc.pid, 2.0)
        procs.forget_pgid(self.proc.pid)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
