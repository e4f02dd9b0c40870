"""A lean JSON-RPC client over stdio: the "direct" arm, with no transport in between.

Owns one child process and its pipes: newline-delimited JSON out, answers matched to
requests by id, any number in flight at once. It must never let a request wait forever:
a dead child or a timeout fails every pending request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import Any

import orjson

from bench import procs, wire

READ_LIMIT = 64 * 1024 * 1024  # one line holds a whole result; 1 MB results plus headroom


class StdioClient:
    def __init__(self, argv: Sequence[str], cpus: set[int], ids: wire.Ids) -> None:
        self.argv = list(argv)
        self.cpus = cpus
        self.ids = ids
        self.proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.stray = 0  # answers that matched no pending request: counted as errors

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, modern: bool = False) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=READ_LIMIT,
            start_new_session=True,
            preexec_fn=procs.preexec(self.cpus),
        )
        procs.register_pgid(self.proc.pid)
        self._reader = asyncio.create_task(self._read())
        if not modern:
            req_id = self.ids()
            wire.check_result(await self.send(req_id, wire.initialize(req_id)), req_id)
            await self.notify(wire.INITIALIZED)

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                message = orjson.loads(line)
                future = self._pending.pop(message.get("id"), None)
                if future is None:
                    if "id" in message and "method" not in message:
                        self.stray += 1
                    continue
                if not future.done():
                    future.set_result(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(wire.WrongAnswer("server closed its stdout"))
            self._pending.clear()

    async def notify(self, body: bytes) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(body + b"\n")
        await self.proc.stdin.drain()

    async def send(self, req_id: int, body: bytes) -> dict[str, Any]:
        """Send a request and wait for its answer (the caller bounds the wait)."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        if self._reader is not None and self._reader.done():
            raise wire.WrongAnswer("server is gone")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        self.proc.stdin.write(body + b"\n")
        await self.proc.stdin.drain()
        try:
            return await future
        finally:
            self._pending.pop(req_id, None)

    async def call(self, call: wire.Call, modern: bool = False) -> None:
        call.check(await self.send(call.id, call.body(modern)))

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            procs.stop_group(self.proc.pid, grace=2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 3)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.proc = None
