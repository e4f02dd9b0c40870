"""Byte streams the proxy speaks HTTP over: a plain TCP stream, and TLS terminated by
the proxy itself over memory BIOs.

TLS toward the sandbox is driven by hand (``ssl.SSLObject`` over ``MemoryBIO``) rather
than by asyncio's ``start_tls`` because the proxy must hand the TLS layer bytes it has
already read: the ClientHello it parsed for SNI (transparent mode), or bytes a client
sent right behind its CONNECT. asyncio's own TLS serves the upstream side, where it
owns the connection from the start.

Owns reading, writing and closing; it must never block the event loop on a handshake
and never pass on bytes of a TLS session whose handshake failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol

from gigmcp.errors import EgressError

READ_SIZE = 256 * 1024


class Stream(Protocol):
    buffered: int  # bytes written and not yet handed on by drain()

    async def read(self) -> bytes:
        """Some bytes, or b"" at the end of the stream."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class PlainStream:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes = b""
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._pending = pending
        # Writes are gathered until drain(): one send per message, not one per piece.
        self._out: list[bytes] = []
        self.buffered = 0

    async def read(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return await self.reader.read(READ_SIZE)

    def write(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self.buffered += len(data)

    def _push(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
            self._out.clear()
            self.buffered = 0

    async def drain(self) -> None:
        self._push()
        await self.writer.drain()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self._push()
        self.writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await self.writer.wait_closed()


class TlsHandshakeError(EgressError):
    pass


class TlsServerStream:
    """TLS terminated by the proxy on top of a raw stream."""

    def __init__(self, raw: PlainStream, context: ssl.SSLContext, initial: bytes = b"") -> None:
        self._raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        if initial:
            self._in.write(initial)
        self._eof = False
        # Plaintext gathered until drain(): one TLS record per message, not per piece.
        self._plain: list[bytes] = []
        self.buffered = 0

    @property
    def tls_object(self) -> ssl.SSLObject:
        return self._tls

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._raw.writer.write(data)  # TLS records go out at once, unbuffered

    async def _fill(self) -> bool:
        data = await self._raw.read()
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                self._flush()
                await self._raw.drain()
                return
            except ssl.SSLWantReadError:
                self._flush()
                await self._raw.drain()
                if not await self._fill():
                    raise TlsHandshakeError("the client closed during the TLS handshake") from None
            except ssl.SSLError as exc:
                self._flush()  # the alert, so the client learns why
                with contextlib.suppress(OSError):
                    await self._raw.drain()
                raise TlsHandshakeError(exc.reason or str(exc)) from None

    async def read(self) -> bytes:
        while True:
            try:
                return self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                self._flush()
                if self._eof or not await self._fill():
                    self._eof = True
                    try:
                        return self._tls.read(READ_SIZE)
                    except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        return b""
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError:
                # A broken or truncated record: the stream ends here.
                return b""

    def write(self, data: bytes) -> None:
        if data:
            self._plain.append(data)
            self.buffered += len(data)

    def _seal(self) -> None:
        if not self._plain:
            return
        data = b"".join(self._plain) if len(self._plain) > 1 else self._plain[0]
        self._plain.clear()
        self.buffered = 0
        view = memoryview(data)
        while view:
            n = self._tls.write(view)
            view = view[n:]
        self._flush()

    async def drain(self) -> None:
        self._seal()
        await self._raw.drain()

    def close(self) -> None:
        with contextlib.suppress(ssl.SSLError, ValueError, OSError, RuntimeError):
            self._seal()
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._tls.unwrap()
        with contextlib.suppress(OSError, RuntimeError):
            self._flush()
        self._raw.close()

    async def wait_closed(self) -> None:
        await self._raw.wait_closed()
