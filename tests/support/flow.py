"""Flows built in memory, for the tests of the exchange's stages: no namespace, no
network, no root.

``flow()`` reads a real request head through h11 into a :class:`Flow` (its head toward
the upstream built, as the exchange builds it before the stages) of one instance that
holds one sealed key (``REAL``, placeholder ``PLACEHOLDER``, for ``api.example.test``
only); ``MemoryStream`` is the sandbox side (what the proxy writes is kept);
``upstream()`` is an upstream connection over a socket pair; ``audit_log()`` is the audit
writer over a fresh SQLite database, with its rows read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import h11
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed
from gigmcp.core.views import ServerDef
from gigmcp.egress import http1
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.clients import Client, Clients
from gigmcp.egress.flow import Flow
from gigmcp.egress.upstream import Upstream
from gigmcp.netpolicy.hosts import canonical_host
from gigmcp.netpolicy.policy import NO_EXTRA_PORTS
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import EgressAuditRow

KEY = InstanceKey(1, "api")
REAL = b"sk_live_REALKEY_0123456789abcdefghijKLMN"
PLACEHOLDER = "gigmcp_ph_" + "P" * 30
HOST_IP, SANDBOX_IP = "10.99.0.1", "10.99.0.2"
EGRESS = {"hosts": ["api.example.test", "other.example.test"], "ports": [443, 80]}
CREDS = [
    {
        "id": "api_key",
        "type": "api_key",
        "inject": {"header": "Authorization", "format": "Bearer {token}"},
        "env": "API_KEY",
        "hosts": ["api.example.test"],
    }
]


def clients() -> Clients:
    """The proxy's table of one instance, as the listeners identify it."""
    egress = parse_egress(EGRESS)
    creds = parse_credentials(CREDS, egress)
    server = ServerDef(1, "api", 7, ("x",), egress=egress, credentials=creds)
    grant = InstanceCredentials(KEY, 7, server, (Sealed(creds[0], PLACEHOLDER, REAL),))
    identities = SourceTable()
    identities.add(Identity(KEY, "api", 1, 7, HOST_IP, SANDBOX_IP, "lo"))
    return Clients(identities, {KEY: grant}.get, NO_EXTRA_PORTS)


def client(*, keyless: bool = False) -> Client:
    """The instance on a connection; ``keyless``: an instance with no grant, so nothing
    to inject or scrub."""
    table = clients()
    if keyless:
        table.grants = lambda _key: None
    found = table.identify(SANDBOX_IP, HOST_IP)
    assert found is not None
    return found


class MemoryStream:
    """The sandbox side of a flow: reads what it was given, keeps what is written."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.incoming = incoming
        self.written = bytearray()
        self.buffered = 0
        self._out: list[bytes] = []

    async def read(self) -> bytes:
        data, self.incoming = self.incoming, b""
        return data

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self.buffered += len(data)

    async def drain(self) -> None:
        self.written += b"".join(self._out)
        self._out.clear()
        self.buffered = 0

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def flow(
    scheme: str,
    host: str,
    port: int,
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
    the_client: Client | None = None,
) -> Flow:
    """A flow whose request head went through h11, decided for ``host``:``port``."""
    who = the_client or client()
    conn = h11.Connection(h11.SERVER)
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in headers or [])
    conn.receive_data(head.encode() + b"\r\n")
    req = conn.next_event()
    assert isinstance(req, h11.Request)
    canonical = canonical_host(host)
    out = Flow(who, conn, MemoryStream(), scheme, request=req, host=canonical, port=port)
    out.target = target
    out.decision = who.policy.check(canonical, port)
    out.headers = http1.request_headers(req, canonical, port, scheme, False)
    return out


@contextlib.asynccontextmanager
async def upstream(verified_tls: bool) -> AsyncIterator[Upstream]:
    """An upstream connection over a socket pair (its far end unread)."""
    near, far = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=near)
    try:
        yield Upstream(("1/api", "https", "x", 443), reader, writer, verified_tls=verified_tls)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        far.close()


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.audit = EgressAudit(engine)

    async def rows(self) -> list[EgressAuditRow]:
        await self.audit.flush()
        with Session(self.engine) as s:
            return list(s.scalars(select(EgressAuditRow).order_by(EgressAuditRow.id)))


@contextlib.contextmanager
def audit_log(tmp_path: Path) -> Iterator[AuditLog]:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(engine)
    try:
        yield AuditLog(engine)
    finally:
        engine.dispose()
