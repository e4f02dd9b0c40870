"""An in-memory transport pair: a server end a test (or an in-process peer) drives, and
the gateway end a connection runs over, with no process and no pipe.

Owns the two byte queues between the ends and the ending of the pair: the server
closing its output (the gateway reads the end of stream and the "process" exits with
status 0) or the gateway killing it (status -9, both directions end). It lives beside
the protocol it implements, under mypy, so a change to :class:`Transport` breaks it
where it is defined rather than in a test. It must never be wired into the gateway: the
supervisor's transports are launched processes.
"""

from __future__ import annotations

import asyncio
import signal


class _Queue:
    """One direction: bytes waiting to be read, and whether more can come."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self._changed = asyncio.Event()

    def put(self, data: bytes) -> None:
        if self.ended:
            raise BrokenPipeError("the reading end has gone")
        self.data += data
        self._notify()

    def end(self) -> None:
        self.ended = True
        self._notify()

    def take(self, n: int) -> bytes:
        chunk = bytes(self.data[:n])
        del self.data[:n]
        self._notify()
        return chunk

    async def changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    def _notify(self) -> None:
        self._changed.set()


class MemoryTransport:
    """The gateway's end: implements :class:`~gigmcp.upstream.transport.Transport`."""

    def __init__(self, to_server: _Queue, from_server: _Queue, exited: asyncio.Future[int]):
        self._out = to_server
        self._in = from_server
        self._exited = exited

    async def read(self, n: int) -> bytes:
        while not self._in.data and not self._in.ended:
            await self._in.changed()
        return self._in.take(n)

    def write(self, data: bytes) -> None:
        self._out.put(data)

    def unsent(self) -> int:
        return len(self._out.data)

    async def drain(self) -> None:
        while self._out.data and not self._out.ended:
            await self._out.changed()

    def close(self) -> None:
        self._out.end()

    def kill(self) -> None:
        _exit(self._exited, -signal.SIGKILL)
        self._out.end()
        self._in.end()

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class ServerEnd:
    """The server's end: read what the gateway wrote, write what the server says."""

    def __init__(self, to_server: _Queue, from_server: _Queue, exited: asyncio.Future[int]):
        self._in = to_server
        self._out = from_server
        self._exited = exited

    async def read_line(self) -> bytes | None:
        """The next line the gateway wrote, without its newline; None at its end."""
        while (end := self._in.data.find(b"\n")) < 0:
            if self._in.ended:
                return None
            await self._in.changed()
        line = self._in.take(end + 1)
        return line[:-1]

    def write(self, data: bytes) -> None:
        """Send bytes to the gateway (a BrokenPipeError once the pair has ended)."""
        self._out.put(data)

    def exit(self, status: int = 0) -> None:
        """The server ends: its output closes and it exits with ``status``."""
        _exit(self._exited, status)
        self._out.end()
        self._in.end()

    @property
    def killed(self) -> bool:
        return self._exited.done() and self._exited.result() == -signal.SIGKILL


def _exit(exited: asyncio.Future[int], status: int) -> None:
    if not exited.done():
        exited.set_result(status)


def memory_pair() -> tuple[MemoryTransport, ServerEnd]:
    """A connected pair on the running event loop."""
    to_server, from_server = _Queue(), _Queue()
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    return (
        MemoryTransport(to_server, from_server, exited),
        ServerEnd(to_server, from_server, exited),
    )
