"""Connections from the proxy to the real upstreams: resolved and vetted, verified TLS,
kept alive and reused.

Owns dialling (only addresses ``resolver.resolve_vetted`` returned, in order, first
success wins), TLS toward the upstream (verified against the system trust store plus
the configured extra bundle, hostname checked against the canonical host), and an idle
pool keyed by instance and destination, so one instance's connection is never handed
to another. It must never dial an unvetted address or skip certificate verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field

import h11

from gigmcp.errors import EgressError
from gigmcp.netpolicy.hosts import Host
from gigmcp.netpolicy.resolver import AddressResolveError, Resolver, resolve_vetted

CONNECT_TIMEOUT_S = 10.0
IDLE_S = 30.0
MAX_IDLE_PER_KEY = 8
MAX_HEADER_BYTES = 64 * 1024

PoolKey = tuple[str, str, str, int]  # (instance, scheme, host, port)


class EgressUpstreamError(EgressError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class Upstream:
    key: PoolKey
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection = field(
        default_factory=lambda: h11.Connection(
            h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES
        )
    )
    idle_since: float = 0.0
    address: str = ""
    # The upstream's certificate was verified on this connection: only then may a key
    # travel on it (inject.py).
    verified_tls: bool = False

    def close(self) -> None:
        self.writer.close()


class UpstreamPool:
    def __init__(self, resolver: Resolver, tls: ssl.SSLContext) -> None:
        self.resolver = resolver
        self.tls = tls
        self._idle: dict[PoolKey, list[Upstream]] = {}
        self.dialled = 0
        self.reused = 0

    async def get(self, instance: str, scheme: str, host: Host, port: int) -> Upstream:
        key: PoolKey = (instance, scheme, host.name, port)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            up = idle.pop()
            if now - up.idle_since < IDLE_S and not up.reader.at_eof():
                self.reused += 1
                return up
            up.close()
        return await self._dial(key, scheme, host, port)

    async def _dial(self, key: PoolKey, scheme: str, host: Host, port: int) -> Upstream:
        try:
            vetted = await resolve_vetted(self.resolver, host.name)
        except AddressResolveError as exc:
            raise EgressUpstreamError(exc.reason, str(exc)) from None
        errors: list[str] = []
        for ip in vetted.addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(
                        str(ip),
                        port,
                        ssl=self.tls if scheme == "https" else None,
                        server_hostname=host.name if scheme == "https" else None,
                        limit=MAX_HEADER_BYTES,
                    )
            except ssl.SSLCertVerificationError as exc:
                raise EgressUpstreamError(
                    "upstream-tls-unverified",
                    f"{host.name}: certificate not trusted ({exc.verify_message})",
                ) from None
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                errors.append(f"{ip}: {type(exc).__name__}")
                continue
            self.dialled += 1
            return Upstream(key, reader, writer, address=str(ip), verified_tls=scheme == "https")
        raise EgressUpstreamError("connect-failed", f"{host.name}:{port}: " + "; ".join(errors))

    def put(self, up: Upstream) -> None:
        """Keep a connection whose exchange ended cleanly; close anything else."""
        if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE:
            try:
                up.conn.start_next_cycle()
            except h11.LocalProtocolError:
                up.close()
                return
            idle = self._idle.setdefault(up.key, [])
            if len(idle) < MAX_IDLE_PER_KEY:
                up.idle_since = time.monotonic()
                idle.append(up)
                return
        up.close()

    def drop_instance(self, instance: str) -> None:
        for key in [k for k in self._idle if k[0] == instance]:
            for up in self._idle.pop(key):
                up.close()

    async def aclose(self) -> None:
        for ups in self._idle.values():
            for up in ups:
                up.close()
                with contextlib.suppress(Exception):
                    await up.writer.wait_closed()
        self._idle.clear()
