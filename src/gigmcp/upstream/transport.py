"""The byte stream an upstream connection runs over, and its implementation over a
launched process's stdio.

Owns the :class:`Transport` protocol (what ``connection.py`` and ``handshake.py`` need:
read, write with a measure of what is still unsent, close, end the peer and learn how
it ended) and :class:`ProcessTransport`, which puts a
:class:`~gigmcp.core.launch.LaunchedProcess` (plain or jailed) behind it. It must never
frame or interpret the bytes: that is the connection's job.
"""

from __future__ import annotations

from typing import Protocol

from gigmcp.core.launch import LaunchedProcess


class Transport(Protocol):
    """A byte stream to one server. ``write`` and ``close`` may raise ``OSError`` or
    ``RuntimeError`` once the far end is gone; ``drain`` may raise ``OSError`` or
    ``ConnectionError``."""

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes as soon as any are available; ``b""`` at end of stream."""
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` without waiting."""
        ...

    def unsent(self) -> int:
        """Bytes written but not yet taken by the server."""
        ...

    async def drain(self) -> None:
        """Wait until what is unsent is down to the stream's own low-water mark."""
        ...

    def close(self) -> None:
        """No more writes: the server sees the end of its input."""
        ...

    def kill(self) -> None:
        """End the server now (it broke a limit, or its handshake failed)."""
        ...

    async def wait(self) -> int:
        """The server's exit status once it has ended (negative: killed by that signal)."""
        ...


class ProcessTransport:
    """:class:`Transport` over a launched process: its stdin and stdout."""

    __slots__ = ("_process",)

    def __init__(self, process: LaunchedProcess) -> None:
        self._process = process

    async def read(self, n: int) -> bytes:
        return await self._process.stdout.read(n)

    def write(self, data: bytes) -> None:
        self._process.stdin.write(data)

    def unsent(self) -> int:
        return self._process.stdin.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self._process.stdin.drain()

    def close(self) -> None:
        self._process.stdin.close()

    def kill(self) -> None:
        self._process.kill()

    async def wait(self) -> int:
        return await self._process.wait()
