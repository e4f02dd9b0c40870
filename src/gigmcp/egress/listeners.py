"""The egress proxy's sockets: three TCP listeners and the sandboxes' resolver, and the
accept loop that hands each connection to its entrance.

The ports are ``GIG_EGRESS_PORT`` and the three after it (explicit proxy, transparent
HTTP, transparent TLS, DNS over UDP), reachable only from sandbox interfaces (the
firewall drops them everywhere else). Every connection is identified before anything is
read from it (``clients.py``): an unknown source, or one arriving elsewhere than its own
host end, is closed and audited; an instance gets at most
``MAX_CONNECTIONS_PER_INSTANCE`` at once. An entrance's unexpected error is logged by
type and place, never by its text, which may quote a header.

Owns the listening sockets, the connection tasks and their bounds. It must never hand
an unidentified connection to an entrance, never log an error's text, and never leave a
connection task or socket behind at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gigmcp.core.instances import InstanceKey
from gigmcp.egress.clients import Client, Clients
from gigmcp.egress.dns import DnsServer, SandboxDns, serve_dns
from gigmcp.egress.http1 import MAX_HEADER_BYTES
from gigmcp.egress.stages.audit import AuditStage
from gigmcp.egress.streams import PlainStream

log = logging.getLogger(__name__)

MAX_CONNECTIONS_PER_INSTANCE = 64

Entrance = Callable[[Client, PlainStream], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProxyPorts:
    explicit: int = 3128
    http: int = 3129
    tls: int = 3130
    dns: int = 3131  # UDP

    @classmethod
    def from_base(cls, base: int) -> ProxyPorts:
        return cls(base, base + 1, base + 2, base + 3)


class Listeners:
    def __init__(
        self, *, clients: Clients, audit: AuditStage, bind: str, ports: ProxyPorts
    ) -> None:
        self.clients = clients
        self.audit = audit
        self.bind = bind
        self.ports = ports
        self._servers: list[asyncio.Server] = []
        self._open: dict[InstanceKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dns: DnsServer | None = None

    async def start(self, *, explicit: Entrance, http: Entrance, tls: Entrance) -> None:
        entrances = (
            (self.ports.explicit, explicit),
            (self.ports.http, http),
            (self.ports.tls, tls),
        )
        try:
            for port, entrance in entrances:
                server = await asyncio.start_server(
                    self._guarded(entrance), self.bind, port, reuse_address=True,
                    limit=MAX_HEADER_BYTES,
                )  # fmt: skip
                self._servers.append(server)
            port = self.ports.dns
            self._dns = await serve_dns(
                self.bind, port, self.clients.identities, self.clients.policy, self.audit.audit
            )
        except OSError as exc:
            await self.aclose()
            raise OSError(
                exc.errno,
                f"the egress proxy cannot listen on port {port} ({exc.strerror}): another "
                "program holds it; set GIG_EGRESS_PORT to a free base port (it uses four)",
            ) from None

    async def aclose(self) -> None:
        if self._dns is not None:
            self._dns.close()
            self._dns = None
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    @property
    def dns(self) -> SandboxDns | None:
        return self._dns.dns if self._dns is not None else None

    def _guarded(
        self, entrance: Entrance
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            stream = PlainStream(reader, writer)
            client = self._identify(writer)
            try:
                if client is None:
                    return
                key = client.identity.key
                if self._open.get(key, 0) >= MAX_CONNECTIONS_PER_INSTANCE:
                    self.audit.on_connection(client, "denied", "too-many-connections")
                    return
                self._open[key] = self._open.get(key, 0) + 1
                try:
                    await entrance(client, stream)
                finally:
                    self._open[key] -= 1
            except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                pass
            except Exception as exc:
                # By type and place only: an error's text may quote a header, and so a key.
                # The place is the deepest frame of ours (h11's own says little).
                frames = traceback.extract_tb(exc.__traceback__)
                frame = next((f for f in reversed(frames) if "/gigmcp/" in f.filename), frames[-1])
                log.error(
                    "egress proxy: connection from %s failed: %s at %s:%s",
                    writer.get_extra_info("peername"), type(exc).__name__,
                    Path(frame.filename).name, frame.lineno,
                )  # fmt: skip
            finally:
                self._tasks.discard(task)
                stream.close()
                await stream.wait_closed()

        return run

    def _identify(self, writer: asyncio.StreamWriter) -> Client | None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        source = str(peer[0]) if peer else "?"
        client = self.clients.identify(source, str(local[0]) if local else None)
        if client is None:
            self.audit.on_unknown_source(source)
        return client
