"""The three ways into the egress proxy, each turning a sandbox connection into decided
requests for the exchange (``exchange.py``):

- the explicit proxy (``HTTPS_PROXY``): CONNECT opens a tunnel (TLS terminated here
  when the client speaks TLS in it, plain HTTP otherwise), absolute-form ``http://``
  requests are carried one by one; a request *to* the proxy (origin-form) is refused;
- transparent HTTP: a sandbox's TCP 80 redirected here; the destination is the Host
  header (port 80 only);
- transparent TLS: a sandbox's TCP 443 redirected here; the destination is the
  ClientHello's server name (``sni.py``), read before any TLS work; no name, no entry.

Every destination is decided (allowlist, then port: ``policy.py``) before any TLS work
and before anything is dialled. Inside a tunnel every request must name the tunnel's
scheme, host and port (421 otherwise), and a ClientHello that names another host than
the CONNECT line gets no TLS. TLS toward the sandbox is terminated with a leaf of the
gateway's CA for the decided host (``certs.py``, ``streams.py``).

Owns reading requests off a sandbox connection and deciding where each goes. It must
never hand the exchange an undecided request, never terminate TLS for a host that was
not decided, and never answer for a host other than the one decided.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import h11

from gigmcp.egress import http1, sni
from gigmcp.egress.certs import LeafCache
from gigmcp.egress.clients import Client
from gigmcp.egress.exchange import Exchange
from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import Denied
from gigmcp.egress.stages.audit import AuditStage
from gigmcp.egress.streams import PlainStream, Stream, TlsHandshakeError, TlsServerStream
from gigmcp.netpolicy.hosts import Host
from gigmcp.netpolicy.policy import Decision

log = logging.getLogger(__name__)


class Entrances:
    def __init__(self, *, exchange: Exchange, audit: AuditStage, leaves: LeafCache) -> None:
        self.exchange = exchange
        self.audit = audit
        self.leaves = leaves

    # -- the explicit proxy --------------------------------------------------------------
    async def explicit(self, client: Client, stream: PlainStream) -> None:
        conn = http1.server_conn()
        while True:
            flow = Flow(client, conn, stream, "http")
            req = await self._read_request(flow)
            if req is None:
                return
            if req.method == b"CONNECT":
                flow.scheme = "connect"
                await self._connect(flow, stream)
                return
            target = req.target.decode("ascii", "replace")
            try:
                if not target.lower().startswith("http://"):
                    raise Denied(
                        403 if target.startswith("/") else 400,
                        "proxy-itself" if target.startswith("/") else "bad-target",
                        "this is a proxy: send absolute-form http:// requests, or CONNECT",
                    )
                url = urlsplit(target)
                host, port = http1.authority(url.netloc, 80)
                decision = _decide(client, host, port)
                http1.check_host_header(req, host, port, 80)
            except Denied as d:
                await self.exchange.refuse(flow, d)
                return
            flow.host, flow.port, flow.decision = host, port, decision
            flow.target = http1.origin_form(url)
            keep = await self.exchange.run(flow)
            if not keep or not http1.next_cycle(conn):
                return

    async def _connect(self, flow: Flow, stream: PlainStream) -> None:
        client, conn, req = flow.client, flow.conn, flow.request
        assert req is not None
        try:
            host, port = http1.authority(req.target.decode("ascii", "replace"), None)
            decision = _decide(client, host, port)
        except Denied as d:
            await self.exchange.refuse(flow, d)
            return
        stream.write(
            conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established"))
        )
        await stream.drain()
        initial, closed = conn.trailing_data
        if not initial and not closed:
            async with asyncio.timeout(http1.IDLE_TIMEOUT_S):
                initial = await stream.read()
        if not initial:
            return
        if initial[0] == 0x16:  # a TLS handshake record
            tls = await self._terminate_tls(client, stream, host, port, initial)
            if tls is not None:
                await self._serve(client, tls, "https", host, port, decision)
            return
        tunnel = PlainStream(stream.reader, stream.writer, initial)
        await self._serve(client, tunnel, "http", host, port, decision)

    # -- transparent HTTP ----------------------------------------------------------------
    async def transparent_http(self, client: Client, stream: PlainStream) -> None:
        conn = http1.server_conn()
        while True:
            flow = Flow(client, conn, stream, "http")
            req = await self._read_request(flow)
            if req is None:
                return
            try:
                raw = http1.header(req, b"host")
                if raw is None:
                    raise Denied(400, "no-host", "a request without a Host header")
                host, port = http1.authority(raw.decode("ascii", "replace"), 80)
                if port != 80:
                    raise Denied(421, "host-mismatch", "the Host header names another port")
                decision = _decide(client, host, port)
                target = req.target.decode("ascii", "replace")
                if not target.startswith("/"):
                    raise Denied(400, "bad-target", "origin-form requests only here")
            except Denied as d:
                await self.exchange.refuse(flow, d)
                return
            flow.host, flow.port, flow.decision, flow.target = host, port, decision, target
            keep = await self.exchange.run(flow)
            if not keep or not http1.next_cycle(conn):
                return

    # -- transparent TLS -----------------------------------------------------------------
    async def transparent_tls(self, client: Client, stream: PlainStream) -> None:
        buffered = b""
        async with asyncio.timeout(http1.IDLE_TIMEOUT_S):
            while True:
                chunk = await stream.read()
                if not chunk:
                    return
                buffered += chunk
                try:
                    message = sni.handshake_bytes(buffered)
                except sni.NotClientHello:
                    self.audit.on_connection(client, "denied", "not-tls")
                    return
                if message is not None:
                    break
        try:
            hello = sni.parse_client_hello(message)
            if hello.server_name is None:
                raise Denied(403, "no-sni", "a TLS connection without a server name")
            host = http1.canonical(hello.server_name)
            decision = _decide(client, host, 443)
        except (Denied, sni.NotClientHello) as exc:
            reason = exc.reason if isinstance(exc, Denied) else "not-tls"
            named = hello.server_name if isinstance(exc, Denied) else None
            self.audit.on_connection(
                client, "denied", reason, scheme="https", host=(named or "")[:255] or None, port=443
            )
            return
        tls = await self._terminate_tls(client, stream, host, 443, buffered)
        if tls is not None:
            await self._serve(client, tls, "https", host, 443, decision)

    # -- inside a tunnel -----------------------------------------------------------------
    async def _terminate_tls(
        self, client: Client, stream: PlainStream, host: Host, port: int, initial: bytes
    ) -> TlsServerStream | None:
        try:
            hello = sni.parse_client_hello(sni.handshake_bytes(initial) or b"")
        except sni.NotClientHello:
            hello = None
        if hello is not None and hello.server_name is not None:
            try:
                named = http1.canonical(hello.server_name)
            except Denied:
                named = None
            if named is None or named.name != host.name:
                self.audit.on_connection(
                    client, "denied", "sni-mismatch", scheme="https", host=host.name, port=port
                )
                return None
        context = await self.leaves.context_for(host.name, is_ip=host.is_ip)
        tls = TlsServerStream(stream, context, initial)
        try:
            async with asyncio.timeout(http1.IDLE_TIMEOUT_S):
                await tls.handshake()
        except (TlsHandshakeError, TimeoutError) as exc:
            self.audit.on_connection(
                client, "error", "tls-handshake", scheme="https", host=host.name, port=port
            )
            log.debug("TLS handshake with %s failed: %s", client.source_ip, exc)
            return None
        return tls

    async def _serve(
        self,
        client: Client,
        stream: Stream,
        scheme: str,
        host: Host,
        port: int,
        decision: Decision,
    ) -> None:
        """HTTP/1.1 inside a tunnel: every request must be for the tunnel's host."""
        conn = http1.server_conn()
        default = 443 if scheme == "https" else 80
        while True:
            flow = Flow(client, conn, stream, scheme, host=host, port=port)
            req = await self._read_request(flow)
            if req is None:
                return
            target = req.target.decode("ascii", "replace")
            try:
                if not target.startswith("/"):
                    url = urlsplit(target)
                    if url.scheme != scheme:
                        raise Denied(421, "host-mismatch", "the request names another scheme")
                    if http1.authority(url.netloc, default) != (host, port):
                        raise Denied(421, "host-mismatch", "the request names another host")
                    target = http1.origin_form(url)
                http1.check_host_header(req, host, port, default)
            except Denied as d:
                await self.exchange.refuse(flow, d)
                return
            flow.target, flow.decision = target, decision
            keep = await self.exchange.run(flow)
            if not keep or not http1.next_cycle(conn):
                return

    async def _read_request(self, flow: Flow) -> h11.Request | None:
        """The flow's request; None at the end (or after answering one that is not HTTP)."""
        try:
            flow.request = await http1.next_request(flow.conn, flow.stream)
        except Denied as d:
            await self.exchange.refuse(flow, d)
            return None
        return flow.request


def _decide(client: Client, host: Host, port: int) -> Decision:
    decision = client.policy.check(host, port)
    if not decision.allowed:
        raise Denied(403, decision.reason, f"{host.name}:{port} is not allowed for this server")
    return decision
