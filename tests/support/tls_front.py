"""A TLS front for a gateway, as a deployment's reverse proxy has it: TLS ends here and
the bytes go on, unchanged, to the gateway's plain-HTTP listener on loopback. The
gateway's public URL is then this front's https one.

Owns the front's listeners (sockets made by the caller, in whatever network namespace
they belong to: a socket keeps the namespace it was made in) and the copying of bytes
both ways. It must never read, change or log what it copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def tls_front(
    cert: Path, key: Path, upstream_port: int, listeners: list[socket.socket]
) -> Iterator[None]:
    """Serve TLS on each of ``listeners`` (bound and listening), copying each connection
    to 127.0.0.1:``upstream_port``, until the block ends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def start() -> None:
        for sock in listeners:
            servers.append(await asyncio.start_server(handle, sock=sock, ssl=ctx))
        started.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="tls-front", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the TLS front did not start")
    try:
        yield
    finally:

        async def stop() -> None:
            for srv in servers:
                srv.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        for sock in listeners:
            sock.close()


def listening(address: str, port: int) -> socket.socket:
    """A TCP listener on address:port in this thread's network namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(64)
    return sock
