"""The egress proxy: every sandbox's only way out, embedded in the gateway's event loop.

Three listeners and a resolver, reachable only from sandbox interfaces (the firewall
drops the ports everywhere else, and every connection is checked again here):

- the explicit proxy (``HTTPS_PROXY``): CONNECT for HTTPS, absolute-form for plain HTTP;
- transparent HTTP and transparent TLS: a sandbox's TCP 80 and 443 to anywhere are
  redirected here by the rules inside its namespace, so a client that ignores the proxy
  variables still meets the proxy; the destination comes from the Host header or the
  TLS server name;
- the sandboxes' DNS (``dns.py``, UDP): it answers only allowlisted names, with an
  address that leads back here.

For every connection, before any TLS work: who is it (source address → instance; the
connection must arrive on that instance's own host end), may it go there (allowlist,
then port). Then the proxy resolves the name itself and dials only vetted addresses
(``resolver.py``), terminates TLS toward the sandbox with a leaf from the gateway's CA,
speaks HTTP/1.1 on both sides through h11, injects credentials toward their hosts only
and only on legs with verified TLS, and scrubs them from everything that comes back
(``inject.py``), and writes an audit row per request. A denial is a 403 with a short
machine-readable reason.

What comes back reaches the sandbox only where the scrubber reads it: the status line
carries the standard reason phrase, never the upstream's; a header whose name holds a
value is dropped; trailers are dropped; nothing that would compress or encrypt what the
scrubber must see is negotiated (bodies are asked for, or decoded to, identity, in
bounded steps; WebSocket extensions are never offered, an upstream that picks one is cut
off, and its frames are re-framed so that the scrubber reads whole messages).
A request framed two ways (Content-Length and Transfer-Encoding) is refused: it would
desync a pooled upstream connection. Errors are logged by type and place, never by their
text, which may quote a header.

Owns connection handling and the HTTP exchange. It must never parse HTTP by hand, never
open a connection for an unknown source, never dial before the decision, and never let a
real credential value reach a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import traceback
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import h11

from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials
from gigmcp.egress import sni
from gigmcp.egress.audit import EgressAudit, EgressEvent, audit_path
from gigmcp.egress.certs import LeafCache
from gigmcp.egress.dns import DnsServer, SandboxDns, serve_dns
from gigmcp.egress.inject import Exfiltration, InstanceKeys, UnusableValue
from gigmcp.egress.scrub import Detector, Scrubber
from gigmcp.egress.streams import PlainStream, Stream, TlsHandshakeError, TlsServerStream
from gigmcp.egress.upstream import EgressUpstreamError, Upstream, UpstreamPool
from gigmcp.egress.websocket import FrameScrubber, WebSocketViolation
from gigmcp.errors import EgressError
from gigmcp.netpolicy.hosts import Host, HostError, canonical_host, split_authority
from gigmcp.netpolicy.policy import DEFAULT_PORTS, NO_EXTRA_PORTS, EgressPolicy, PortRules
from gigmcp.netpolicy.resolver import Resolver
from gigmcp.sandbox.identity import Identity, SourceTable

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 60.0  # between requests on a kept-alive connection
RESPONSE_TIMEOUT_S = 300.0  # from request sent to response head
MAX_CONNECTIONS_PER_INSTANCE = 64
FLUSH_BYTES = 64 * 1024  # a streamed answer is handed on at least this often
# Hop-by-hop, proxy-only, or framing headers that are rebuilt rather than passed on, and
# WebSocket extensions (permessage-deflate would hide an echoed key from the scrubber).
REQUEST_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te",
     b"trailer", b"upgrade", b"expect", b"sec-websocket-extensions"}
)  # fmt: skip
RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"te",
     b"trailer", b"upgrade", b"sec-websocket-extensions"}
)  # fmt: skip
OWN_HEADER_PREFIX = b"x-gigmcp-"


@dataclass(frozen=True, slots=True)
class ProxyPorts:
    explicit: int = 3128
    http: int = 3129
    tls: int = 3130
    dns: int = 3131  # UDP

    @classmethod
    def from_base(cls, base: int) -> ProxyPorts:
        return cls(base, base + 1, base + 2, base + 3)


class Denied(EgressError):
    def __init__(self, status: int, reason: str, message: str, credential: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.credential = credential


@dataclass(slots=True)
class _Client:
    identity: Identity
    policy: EgressPolicy
    keys: InstanceKeys
    source_ip: str

    def event(self, decision: str, reason: str, **kw: object) -> EgressEvent:
        i = self.identity
        return EgressEvent(
            source_ip=self.source_ip,
            decision=decision,
            reason=reason,
            owner_id=i.owner_id,
            profile_id=i.profile_id,
            server=i.server_name,
            instance=f"{i.key.profile_id}/{i.key.server_name}",
            **kw,  # type: ignore[arg-type]
        )


class EgressProxy:
    def __init__(
        self,
        *,
        identities: SourceTable,
        grants: Callable[[InstanceKey], InstanceCredentials | None],
        resolver: Resolver,
        leaves: LeafCache,
        upstream_tls: ssl.SSLContext,
        audit: EgressAudit,
        ports: ProxyPorts | None = None,
        bind: str = "0.0.0.0",  # noqa: S104 - only sandbox interfaces reach it (firewall)
        port_rules: PortRules = NO_EXTRA_PORTS,  # the operator's GIG_EGRESS_EXTRA_PORTS
    ) -> None:
        self.port_rules = port_rules
        self.identities = identities
        self.grants = grants
        self.leaves = leaves
        self.pool = UpstreamPool(resolver, upstream_tls)
        self.audit = audit
        self.ports = ports or ProxyPorts()
        self.bind = bind
        self._servers: list[asyncio.Server] = []
        self._open: dict[InstanceKey, int] = {}
        self._compiled: dict[
            InstanceKey, tuple[InstanceCredentials | None, EgressPolicy, InstanceKeys]
        ] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dns: DnsServer | None = None

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        handlers = (
            (self.ports.explicit, self._explicit),
            (self.ports.http, self._transparent_http),
            (self.ports.tls, self._transparent_tls),
        )
        try:
            for port, handler in handlers:
                server = await asyncio.start_server(
                    self._guarded(handler), self.bind, port, reuse_address=True,
                    limit=MAX_HEADER_BYTES,
                )  # fmt: skip
                self._servers.append(server)
            port = self.ports.dns
            self._dns = await serve_dns(self.bind, port, self.identities, self._policy, self.audit)
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
        await self.pool.aclose()

    @property
    def dns(self) -> SandboxDns | None:
        return self._dns.dns if self._dns is not None else None

    def forget(self, key: InstanceKey) -> None:
        """An instance ended: drop its compiled keys and its idle upstream connections."""
        self._compiled.pop(key, None)
        self.pool.drop_instance(f"{key.profile_id}/{key.server_name}")

    # -- accepting -----------------------------------------------------------------------
    def _guarded(
        self, handler: Callable[[_Client, PlainStream], Awaitable[None]]
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
                    self.audit.record(client.event("denied", "too-many-connections"))
                    return
                self._open[key] = self._open.get(key, 0) + 1
                try:
                    await handler(client, stream)
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

    def _identify(self, writer: asyncio.StreamWriter) -> _Client | None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        source = str(peer[0]) if peer else "?"
        identity = self.identities.lookup(source)
        # The connection must arrive at the instance's own host end: an address is an
        # identity only on its own link.
        if identity is None or not local or str(local[0]) != identity.host_ip:
            self.audit.record(
                EgressEvent(source_ip=source, decision="denied", reason="unknown-source")
            )
            return None
        compiled = self._compile(identity.key)
        return _Client(identity, compiled[1], compiled[2], source)

    def _compile(
        self, key: InstanceKey
    ) -> tuple[InstanceCredentials | None, EgressPolicy, InstanceKeys]:
        grant = self.grants(key)
        compiled = self._compiled.get(key)
        if compiled is None or compiled[0] is not grant:
            # Built once per launch (a relaunch brings a new grant): the policy, and the
            # instance's keys with its scrubber and detector.
            server = grant.server if grant is not None else None
            hosts = server.egress.hosts if server is not None else ()
            ports = server.egress.ports if server is not None else DEFAULT_PORTS
            # Checked again on every connection: a grant written before the operator
            # withdrew a port from GIG_EGRESS_EXTRA_PORTS cannot open it.
            policy = EgressPolicy(hosts, ports, self.port_rules)
            compiled = (grant, policy, InstanceKeys(grant, hosts))
            self._compiled[key] = compiled
        return compiled

    def _policy(self, key: InstanceKey) -> EgressPolicy:
        return self._compile(key)[1]

    def _granted(self, client: _Client) -> bool:
        """Whether the grant this connection was opened under is still its instance's.
        A credential or egress change revokes it at once (the supervisor retires the
        instance), and a connection opened before must not carry another request out."""
        return self._compile(client.identity.key)[2] is client.keys

    # -- the three entrances -------------------------------------------------------------
    async def _explicit(self, client: _Client, stream: PlainStream) -> None:
        conn = _server_conn()
        while True:
            req = await self._read_request(client, conn, stream)
            if req is None:
                return
            if req.method == b"CONNECT":
                await self._connect(client, conn, stream, req)
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
                host, port = _authority(url.netloc, 80)
                self._decide(client, host, port)
                _check_host_header(req, host, port, 80)
            except Denied as d:
                await self._deny(client, conn, stream, d, req, "http", None, None)
                return
            origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
            keep = await self._exchange(client, conn, stream, req, "http", host, port, origin)
            if not keep or not _next_cycle(conn):
                return

    async def _connect(
        self, client: _Client, conn: h11.Connection, stream: PlainStream, req: h11.Request
    ) -> None:
        try:
            host, port = _authority(req.target.decode("ascii", "replace"), None)
            self._decide(client, host, port)
        except Denied as d:
            await self._deny(client, conn, stream, d, req, "connect", None, None)
            return
        stream.write(
            conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established"))
        )
        await stream.drain()
        initial, closed = conn.trailing_data
        if not initial and not closed:
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                initial = await stream.read()
        if not initial:
            return
        if initial[0] == 0x16:  # a TLS handshake record
            tls = await self._terminate_tls(client, stream, host, port, initial)
            if tls is not None:
                await self._serve(client, tls, "https", host, port)
            return
        await self._serve(
            client, PlainStream(stream.reader, stream.writer, initial), "http", host, port
        )

    async def _transparent_http(self, client: _Client, stream: PlainStream) -> None:
        conn = _server_conn()
        while True:
            req = await self._read_request(client, conn, stream)
            if req is None:
                return
            try:
                raw = _header(req, b"host")
                if raw is None:
                    raise Denied(400, "no-host", "a request without a Host header")
                host, port = _authority(raw.decode("ascii", "replace"), 80)
                if port != 80:
                    raise Denied(421, "host-mismatch", "the Host header names another port")
                self._decide(client, host, port)
                target = req.target.decode("ascii", "replace")
                if not target.startswith("/"):
                    raise Denied(400, "bad-target", "origin-form requests only here")
            except Denied as d:
                await self._deny(client, conn, stream, d, req, "http", None, None)
                return
            keep = await self._exchange(client, conn, stream, req, "http", host, port, target)
            if not keep or not _next_cycle(conn):
                return

    async def _transparent_tls(self, client: _Client, stream: PlainStream) -> None:
        buffered = b""
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            while True:
                chunk = await stream.read()
                if not chunk:
                    return
                buffered += chunk
                try:
                    message = sni.handshake_bytes(buffered)
                except sni.NotClientHello:
                    self.audit.record(client.event("denied", "not-tls"))
                    return
                if message is not None:
                    break
        try:
            hello = sni.parse_client_hello(message)
            if hello.server_name is None:
                raise Denied(403, "no-sni", "a TLS connection without a server name")
            host = _canonical(hello.server_name)
            self._decide(client, host, 443)
        except (Denied, sni.NotClientHello) as exc:
            reason = exc.reason if isinstance(exc, Denied) else "not-tls"
            named = hello.server_name if isinstance(exc, Denied) else None
            self.audit.record(
                client.event(
                    "denied", reason, scheme="https", host=(named or "")[:255] or None, port=443
                )
            )
            return
        tls = await self._terminate_tls(client, stream, host, 443, buffered)
        if tls is not None:
            await self._serve(client, tls, "https", host, 443)

    async def _read_request(
        self, client: _Client, conn: h11.Connection, stream: Stream
    ) -> h11.Request | None:
        """The next request; None at the end (or after answering one that is not HTTP)."""
        try:
            return await _next_request(conn, stream)
        except Denied as d:
            await self._deny(client, conn, stream, d, None, "http", None, None)
            return None

    # -- decisions -----------------------------------------------------------------------
    def _decide(self, client: _Client, host: Host, port: int) -> None:
        decision = client.policy.check(host, port)
        if not decision.allowed:
            raise Denied(403, decision.reason, f"{host.name}:{port} is not allowed for this server")

    async def _terminate_tls(
        self, client: _Client, stream: PlainStream, host: Host, port: int, initial: bytes
    ) -> TlsServerStream | None:
        try:
            hello = sni.parse_client_hello(sni.handshake_bytes(initial) or b"")
        except sni.NotClientHello:
            hello = None
        if hello is not None and hello.server_name is not None:
            try:
                named = _canonical(hello.server_name)
            except Denied:
                named = None
            if named is None or named.name != host.name:
                self.audit.record(
                    client.event(
                        "denied", "sni-mismatch", scheme="https", host=host.name, port=port
                    )
                )
                return None
        context = await self.leaves.context_for(host.name, is_ip=host.is_ip)
        tls = TlsServerStream(stream, context, initial)
        try:
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                await tls.handshake()
        except (TlsHandshakeError, TimeoutError) as exc:
            self.audit.record(
                client.event("error", "tls-handshake", scheme="https", host=host.name, port=port)
            )
            log.debug("TLS handshake with %s failed: %s", client.source_ip, exc)
            return None
        return tls

    async def _serve(
        self, client: _Client, stream: Stream, scheme: str, host: Host, port: int
    ) -> None:
        """HTTP/1.1 inside a tunnel: every request must be for the tunnel's host."""
        conn = _server_conn()
        default = 443 if scheme == "https" else 80
        while True:
            try:
                req = await _next_request(conn, stream)
            except Denied as d:
                await self._deny(client, conn, stream, d, None, scheme, host, port)
                return
            if req is None:
                return
            target = req.target.decode("ascii", "replace")
            try:
                if not target.startswith("/"):
                    url = urlsplit(target)
                    if url.scheme != scheme:
                        raise Denied(421, "host-mismatch", "the request names another scheme")
                    if _authority(url.netloc, default) != (host, port):
                        raise Denied(421, "host-mismatch", "the request names another host")
                    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
                _check_host_header(req, host, port, default)
            except Denied as d:
                await self._deny(client, conn, stream, d, req, scheme, host, port)
                return
            keep = await self._exchange(client, conn, stream, req, scheme, host, port, target)
            if not keep or not _next_cycle(conn):
                return

    # -- one exchange --------------------------------------------------------------------
    async def _exchange(
        self,
        client: _Client,
        conn: h11.Connection,
        stream: Stream,
        req: h11.Request,
        scheme: str,
        host: Host,
        port: int,
        target: str,
    ) -> bool:
        started = time.monotonic()
        event = client.event(
            "allowed", "allowed", method=req.method.decode("ascii", "replace")[:16],
            scheme=scheme, host=host.name, port=port, path=audit_path(target),
        )  # fmt: skip
        names = {bytes(n) for n, _v in req.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            # Read one way here and another upstream, the rest of the body would be the
            # next request on a pooled connection.
            await self._deny(
                client, conn, stream,
                Denied(400, "ambiguous-framing", "a request with both Content-Length and "
                       "Transfer-Encoding"),
                req, scheme, host, port,
            )  # fmt: skip
            return False
        websocket = _is_websocket(req)
        headers = _request_headers(req, host, port, scheme, websocket)
        try:
            # Only an https leg dials with the verifying context (upstream.py).
            headers, injected = client.keys.rewrite(
                host, target.encode(), headers, verified_tls=scheme == "https"
            )
        except (Exfiltration, UnusableValue) as exc:
            status = 403 if isinstance(exc, Exfiltration) else 502
            await self._deny(
                client, conn, stream,
                Denied(status, exc.reason, str(exc), exc.credential_id),
                req, scheme, host, port,
            )  # fmt: skip
            return False
        event.credential = ",".join(injected)[:64] or None
        if client.keys.scrubs:
            # Ask for an answer the scrubber can read.
            headers = [(n, v) for n, v in headers if n.lower() != b"accept-encoding"]
            headers.append((b"accept-encoding", b"identity"))
        try:
            up = await self.pool.get(event.instance or "", scheme, host, port)
        except EgressUpstreamError as exc:
            await self._deny(
                client, conn, stream, Denied(502, exc.reason, str(exc)), req, scheme, host, port
            )
            return False
        try:
            return await self._relay(
                client, conn, stream, req, up, headers, target, host, event, websocket
            )
        except Denied as d:
            up.close()
            await self._deny(client, conn, stream, d, req, scheme, host, port, event=event)
            return False
        except h11.LocalProtocolError:
            # h11 refused to send something; its message may quote a header: not kept.
            up.close()
            denied = Denied(502, "protocol-error", "the proxy could not pass this exchange on")
            await self._deny(client, conn, stream, denied, req, scheme, host, port, event=event)
            return False
        except BaseException:
            up.close()
            event.decision, event.reason = "error", "aborted"
            raise
        finally:
            event.duration_ms = round((time.monotonic() - started) * 1000, 3)
            self.audit.record(event)

    async def _relay(
        self,
        client: _Client,
        conn: h11.Connection,
        stream: Stream,
        req: h11.Request,
        up: Upstream,
        headers: list[tuple[bytes, bytes]],
        target: str,
        host: Host,
        event: EgressEvent,
        websocket: bool,
    ) -> bool:
        # The head leaves with the first piece of the body (or its end): one write.
        head = up.conn.send(h11.Request(method=req.method, target=target.encode(), headers=headers))
        if conn.client_is_waiting_for_100_continue:
            stream.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            await stream.drain()
        detector: Detector | None = client.keys.detector()
        # The request body, streamed, watched for placeholders heading the wrong way.
        while True:
            ev = await _next_event(conn, stream, IDLE_TIMEOUT_S)
            # The head (with the key in it) leaves below, after waiting on the sandbox:
            # only if the grant was not revoked meanwhile.
            if head and not self._granted(client):
                raise Denied(403, "grant-revoked", "the instance's egress grant was revoked")
            if isinstance(ev, h11.Data):
                if detector is not None:
                    try:
                        client.keys.check_found(
                            detector.feed(bytes(ev.data)), host, verified_tls=up.verified_tls
                        )
                    except Exfiltration as exc:
                        raise Denied(403, exc.reason, str(exc), exc.credential_id) from None
                event.bytes_out += len(ev.data)
                up.writer.write(head + up.conn.send(h11.Data(data=ev.data)))
                head = b""
                await up.writer.drain()
            elif isinstance(ev, h11.EndOfMessage):
                up.writer.write(head + up.conn.send(h11.EndOfMessage()))
                await up.writer.drain()
                break
            elif ev is h11.PAUSED:
                up.writer.write(head)  # a protocol switch proposal (WebSocket): no body
                await up.writer.drain()
                break
            else:
                raise Denied(400, "bad-request", "the request ended early")
        # The response.
        scrubber = client.keys.scrubber() if client.keys.scrubs else None
        upstream = PlainStream(up.reader, up.writer)
        while True:
            try:
                rev = await _next_event(up.conn, upstream, RESPONSE_TIMEOUT_S, remote=True)
            except TimeoutError:
                raise Denied(504, "upstream-timeout", "the upstream did not answer") from None
            if isinstance(rev, h11.InformationalResponse):
                if rev.status_code == 101 and websocket:
                    if any(n == b"sec-websocket-extensions" for n, _v in rev.headers):
                        # None was offered: its frames may be compressed past the scrubber.
                        raise Denied(
                            502, "upstream-extension",
                            "the upstream chose a WebSocket extension that was not offered",
                        )  # fmt: skip
                    frames = FrameScrubber(client.keys.scrubber) if scrubber is not None else None
                    return await self._switch(conn, stream, up, rev, scrubber, frames, event)
                if rev.status_code != 100:
                    early = _response_headers(rev.headers, scrubber, keep_length=True)
                    info = h11.InformationalResponse(status_code=rev.status_code, headers=early)
                    stream.write(conn.send(info))
                continue
            if isinstance(rev, h11.Response):
                break
            raise Denied(502, "upstream-protocol", "the upstream did not answer with HTTP")
        event.status = rev.status_code
        encoding = (_header_of(rev.headers, b"content-encoding") or b"").strip().lower()
        decoder = None
        if scrubber is not None and encoding not in (b"", b"identity"):
            if encoding in (b"gzip", b"x-gzip", b"deflate"):
                decoder = zlib.decompressobj(wbits=47 if encoding != b"deflate" else 15)
            else:
                raise Denied(502, "undecodable-encoding", "an answer the proxy cannot scrub")
        out_headers = _response_headers(
            rev.headers, scrubber, keep_length=scrubber is None, drop_encoding=decoder is not None
        )
        # The standard reason phrase: the upstream's ("401 invalid key sk_live...") is
        # text the scrubber never sees.
        reason = _reason(rev.status_code)
        stream.write(
            conn.send(h11.Response(status_code=rev.status_code, headers=out_headers, reason=reason))
        )
        while True:
            rev = await _next_event(
                up.conn, upstream, RESPONSE_TIMEOUT_S, remote=True, flush=stream
            )
            if isinstance(rev, h11.Data):
                data = bytes(rev.data)
                event.bytes_in += len(data)
                while data:
                    if decoder is not None:
                        # In bounded steps, each handed on before the next: a body that
                        # inflates a thousandfold never sits in memory whole.
                        piece = decoder.decompress(data, FLUSH_BYTES)
                        data = decoder.unconsumed_tail
                    else:
                        piece, data = data, b""
                    if scrubber is not None:
                        piece = scrubber.feed(piece)
                    if piece:
                        stream.write(conn.send(h11.Data(data=piece)))
                        if stream.buffered >= FLUSH_BYTES:
                            await stream.drain()
            elif isinstance(rev, h11.EndOfMessage):
                tail = decoder.flush() if decoder is not None else b""
                if scrubber is not None:
                    tail = scrubber.feed(tail) + scrubber.flush()
                if tail:
                    stream.write(conn.send(h11.Data(data=tail)))
                stream.write(conn.send(h11.EndOfMessage()))
                await stream.drain()
                break
            else:
                raise ConnectionError("the upstream closed mid-answer")
        self.pool.put(up)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _switch(
        self,
        conn: h11.Connection,
        stream: Stream,
        up: Upstream,
        rev: h11.InformationalResponse,
        scrubber: Scrubber | None,
        frames: FrameScrubber | None,
        event: EgressEvent,
    ) -> bool:
        """A WebSocket upgrade the upstream accepted: from here on, frames (re-framed
        and scrubbed toward the sandbox, ``websocket.py``) and bytes toward the upstream."""
        event.status = 101
        switched = _response_headers(rev.headers, scrubber, keep_length=True, upgrade=True)
        stream.write(conn.send(h11.InformationalResponse(status_code=101, headers=switched)))
        await stream.drain()
        from_client = conn.trailing_data[0]
        from_upstream = up.conn.trailing_data[0]
        upstream = PlainStream(up.reader, up.writer, from_upstream)

        async def pump_up() -> None:
            if from_client:
                up.writer.write(from_client)
            while data := await stream.read():
                event.bytes_out += len(data)
                up.writer.write(data)
                await up.writer.drain()
            up.writer.close()

        async def pump_down() -> None:
            try:
                while data := await upstream.read():
                    event.bytes_in += len(data)
                    stream.write(frames.feed(data) if frames is not None else data)
                    await stream.drain()
            except WebSocketViolation:
                # A frame the scrubber cannot read: both ends are cut off, nothing of it
                # goes on. (A message cut short is dropped with what was held of it.)
                event.decision, event.reason = "denied", "upstream-websocket-frame"
                up.close()
            stream.close()

        try:
            await asyncio.gather(pump_up(), pump_down())
        finally:
            up.close()
        return False

    # -- denials -------------------------------------------------------------------------
    async def _deny(
        self,
        client: _Client,
        conn: h11.Connection,
        stream: Stream,
        denied: Denied,
        req: h11.Request | None,
        scheme: str,
        host: Host | None,
        port: int | None,
        event: EgressEvent | None = None,
    ) -> None:
        if event is None:
            target = req.target.decode("ascii", "replace") if req is not None else ""
            event = client.event(
                "denied", denied.reason,
                method=req.method.decode("ascii", "replace")[:16] if req is not None else None,
                scheme=scheme, host=host.name if host else _target_host(target),
                port=port, path=audit_path(target) if target.startswith(("/", "http")) else None,
            )  # fmt: skip
            event.status = denied.status
            event.credential = denied.credential
            self.audit.record(event)
        else:
            event.decision, event.reason, event.status = "denied", denied.reason, denied.status
            event.credential = denied.credential or event.credential
        body = json.dumps(
            {"error": "egress_denied", "reason": denied.reason, "message": str(denied)}
        ).encode()
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError):
                stream.write(conn.send(h11.Response(
                    status_code=denied.status,
                    headers=[(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode()),
                             (b"x-gigmcp-denied", denied.reason.encode()),
                             (b"connection", b"close")],
                )))  # fmt: skip
                stream.write(conn.send(h11.Data(data=body)))
                stream.write(conn.send(h11.EndOfMessage()))
                with contextlib.suppress(ConnectionError):
                    await stream.drain()


# -- h11 plumbing ------------------------------------------------------------------------
def _server_conn() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)


async def _next_event(
    conn: h11.Connection,
    stream: Stream,
    timeout: float,
    remote: bool = False,
    flush: Stream | None = None,
) -> h11.Event | type[h11.PAUSED]:
    while True:
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if remote:
                raise Denied(502, "upstream-protocol", "the upstream broke HTTP/1.1") from None
            raise Denied(exc.error_status_hint, "bad-request", "not HTTP/1.1") from None
        if ev is h11.NEED_DATA:
            if flush is not None and flush.buffered:
                # About to wait for the upstream: hand on what it sent so far, so that a
                # stream of small events (server-sent events) never waits in a buffer.
                await flush.drain()
            async with asyncio.timeout(timeout):
                data = await stream.read()
            conn.receive_data(data)
            continue
        return ev  # type: ignore[return-value]


async def _next_request(conn: h11.Connection, stream: Stream) -> h11.Request | None:
    try:
        ev = await _next_event(conn, stream, IDLE_TIMEOUT_S)
    except TimeoutError:
        return None
    if isinstance(ev, h11.Request):
        return ev
    return None


def _next_cycle(conn: h11.Connection) -> bool:
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False


def _canonical(raw: str) -> Host:
    try:
        return canonical_host(raw)
    except HostError as exc:
        raise Denied(400, "bad-host", str(exc)) from None


def _authority(raw: str, default_port: int | None) -> tuple[Host, int]:
    try:
        return split_authority(raw, default_port)
    except HostError as exc:
        raise Denied(400, "bad-host", str(exc)) from None


def _target_host(target: str) -> str | None:
    with contextlib.suppress(Denied, ValueError):
        if target.startswith("http"):
            return _authority(urlsplit(target).netloc, 80)[0].name
        return _authority(target, None)[0].name
    return None


def _header(req: h11.Request, name: bytes) -> bytes | None:
    return _header_of(req.headers, name)


def _header_of(headers: object, name: bytes) -> bytes | None:
    values = [v for n, v in headers if n == name]  # type: ignore[attr-defined]
    if len(values) > 1:
        raise Denied(400, "bad-request", f"more than one {name.decode()} header")
    return bytes(values[0]) if values else None


def _check_host_header(req: h11.Request, host: Host, port: int, default: int) -> None:
    raw = _header(req, b"host")
    if raw is None:
        return  # HTTP/1.0; the proxy sends the right one
    if _authority(raw.decode("ascii", "replace"), default) != (host, port):
        raise Denied(421, "host-mismatch", "the Host header names another host than the tunnel")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _is_websocket(req: h11.Request) -> bool:
    upgrade = (_header(req, b"upgrade") or b"").lower()
    return upgrade == b"websocket"


def _request_headers(
    req: h11.Request, host: Host, port: int, scheme: str, websocket: bool
) -> list[tuple[bytes, bytes]]:
    connection_named = {
        t.strip().lower()
        for n, v in req.headers if n == b"connection"
        for t in bytes(v).split(b",")
    }  # fmt: skip
    out: list[tuple[bytes, bytes]] = []
    for n, v in req.headers:
        name = bytes(n)
        if name in REQUEST_DROP or name in connection_named or name == b"host":
            continue
        if name.startswith(OWN_HEADER_PREFIX):
            continue
        out.append((name, bytes(v)))
    default = 443 if scheme == "https" else 80
    authority = (
        host.name if not host.is_ip or host.ip is None or host.ip.version == 4 else f"[{host.name}]"
    )
    out.insert(0, (b"host", (authority if port == default else f"{authority}:{port}").encode()))
    if websocket:
        out += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
    return out


def _response_headers(
    headers: object,
    scrubber: Scrubber | None,
    *,
    keep_length: bool,
    drop_encoding: bool = False,
    upgrade: bool = False,
) -> list[tuple[bytes, bytes]]:
    connection_named = {
        t.strip().lower()
        for n, v in headers if n == b"connection"  # type: ignore[attr-defined]
        for t in bytes(v).split(b",")
    }  # fmt: skip
    out: list[tuple[bytes, bytes]] = []
    for n, v in headers:  # type: ignore[attr-defined]
        name = bytes(n)
        if name.startswith(OWN_HEADER_PREFIX):
            continue  # an upstream cannot speak in the proxy's name
        if scrubber is not None and scrubber.found_folded(name):
            # A name cannot take a placeholder's spelling of every kind, and h11 lower-
            # cases it (a lower-cased key is still most of a key): the header goes.
            continue
        if name in RESPONSE_DROP or (name in connection_named and not upgrade):
            continue
        if not keep_length and name in (b"content-length", b"transfer-encoding"):
            continue
        if drop_encoding and name == b"content-encoding":
            continue
        value = bytes(v)
        if scrubber is not None:
            value = scrubber.replace_all(value)
        out.append((name, value))
    if upgrade:
        out += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
    return out
