"""HTTP/1.1 plumbing for the egress proxy: reading and writing through h11, the headers
rebuilt on each side, and the fixed answer to a refused request.

Owns the h11 helpers (a server-side connection with bounded heads, the next event with
a timeout, the next request, the next cycle), turning a target or a Host header into a
canonical host and port, the request headers sent upstream (hop-by-hop, proxy-only and
the proxy's own headers dropped, Host rebuilt), the response headers passed back (the
same, and framing headers when the body is re-framed), the standard reason phrase, and
:class:`Denied` with its JSON answer. It must never parse HTTP by hand, never pass on a
header that names a hop-by-hop header, never let an upstream speak in the proxy's name
(``X-Gigmcp-*``), and never quote a header or an h11 error in what it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from urllib.parse import SplitResult, urlsplit

import h11

from gigmcp.egress.streams import Stream
from gigmcp.errors import EgressError
from gigmcp.netpolicy.hosts import Host, HostError, canonical_host, split_authority

Headers = list[tuple[bytes, bytes]]

MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 60.0  # between requests on a kept-alive connection
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
UPGRADE_HEADERS = ((b"connection", b"Upgrade"), (b"upgrade", b"websocket"))


class Denied(EgressError):
    """A request the proxy refuses: the status, the short machine-readable reason, a
    message for the sandbox (never a header or a value), and the credential concerned."""

    def __init__(self, status: int, reason: str, message: str, credential: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.credential = credential


# -- h11 ---------------------------------------------------------------------------------
def server_conn() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)


async def next_event(
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


async def next_request(conn: h11.Connection, stream: Stream) -> h11.Request | None:
    try:
        ev = await next_event(conn, stream, IDLE_TIMEOUT_S)
    except TimeoutError:
        return None
    if isinstance(ev, h11.Request):
        return ev
    return None


def next_cycle(conn: h11.Connection) -> bool:
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False


# -- where a request goes ----------------------------------------------------------------
def canonical(raw: str) -> Host:
    try:
        return canonical_host(raw)
    except HostError as exc:
        raise Denied(400, "bad-host", str(exc)) from None


def authority(raw: str, default_port: int | None) -> tuple[Host, int]:
    try:
        return split_authority(raw, default_port)
    except HostError as exc:
        raise Denied(400, "bad-host", str(exc)) from None


def target_host(target: str) -> str | None:
    """The host a raw request target names, for an audit row; None if it names none."""
    with contextlib.suppress(Denied, ValueError):
        if target.startswith("http"):
            return authority(urlsplit(target).netloc, 80)[0].name
        return authority(target, None)[0].name
    return None


def origin_form(url: SplitResult) -> str:
    """The origin-form target (path and query) of an absolute URL."""
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


def header(req: h11.Request, name: bytes) -> bytes | None:
    return header_of(req.headers, name)


def header_of(headers: object, name: bytes) -> bytes | None:
    values = [v for n, v in headers if n == name]  # type: ignore[attr-defined]
    if len(values) > 1:
        raise Denied(400, "bad-request", f"more than one {name.decode()} header")
    return bytes(values[0]) if values else None


def check_host_header(req: h11.Request, host: Host, port: int, default: int) -> None:
    raw = header(req, b"host")
    if raw is None:
        return  # HTTP/1.0; the proxy sends the right one
    if authority(raw.decode("ascii", "replace"), default) != (host, port):
        raise Denied(421, "host-mismatch", "the Host header names another host than the tunnel")


def is_websocket(req: h11.Request) -> bool:
    upgrade = (header(req, b"upgrade") or b"").lower()
    return upgrade == b"websocket"


def ambiguous_framing(req: h11.Request) -> bool:
    """Whether a request is framed two ways: read one way here and another upstream, the
    rest of its body would be the next request on a pooled connection."""
    names = {bytes(n) for n, _v in req.headers}
    return b"content-length" in names and b"transfer-encoding" in names


# -- headers on each side ----------------------------------------------------------------
def request_headers(
    req: h11.Request, host: Host, port: int, scheme: str, websocket: bool
) -> Headers:
    connection_named = {
        t.strip().lower()
        for n, v in req.headers if n == b"connection"
        for t in bytes(v).split(b",")
    }  # fmt: skip
    out: Headers = []
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
        out += UPGRADE_HEADERS
    return out


def response_headers(
    headers: object, *, keep_length: bool, drop_encoding: bool = False, upgrade: bool = False
) -> Headers:
    """The upstream's headers less what the proxy rebuilds or must not pass on; with
    ``upgrade``, the headers a switch names are kept (the upgrade ones are added by the
    caller, after scrubbing)."""
    connection_named = {
        t.strip().lower()
        for n, v in headers if n == b"connection"  # type: ignore[attr-defined]
        for t in bytes(v).split(b",")
    }  # fmt: skip
    out: Headers = []
    for n, v in headers:  # type: ignore[attr-defined]
        name = bytes(n)
        if name.startswith(OWN_HEADER_PREFIX):
            continue  # an upstream cannot speak in the proxy's name
        if name in RESPONSE_DROP or (name in connection_named and not upgrade):
            continue
        if not keep_length and name in (b"content-length", b"transfer-encoding"):
            continue
        if drop_encoding and name == b"content-encoding":
            continue
        out.append((name, bytes(v)))
    return out


def reason_phrase(status: int) -> bytes:
    """The standard phrase: the upstream's ("401 invalid key sk_live...") is text the
    scrubber never sees."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


# -- the refusal -------------------------------------------------------------------------
async def write_refusal(conn: h11.Connection, stream: Stream, denied: Denied) -> None:
    """The JSON answer to a refused request, when nothing of an answer was sent yet."""
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
