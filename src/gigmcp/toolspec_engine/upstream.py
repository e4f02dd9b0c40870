"""Sending one request to the tool's API over HTTPS, and reading the answer.

Owns the connection: TLS verified against the CA bundle named by ``SSL_CERT_FILE`` (in
the jail, the egress proxy's CA: the proxy terminates TLS to swap the placeholder for
the key), a CONNECT tunnel through ``HTTPS_PROXY`` unless ``NO_PROXY`` names the host
(in the jail the proxy is the only route out anyway, so traffic that skipped it would
just fail), one overall deadline per call, a cap on the body read, bounded decoding of
a compressed answer, and a small keep-alive pool so that consecutive calls skip a TLS
handshake. Redirects are not followed: the answer is returned as it came.

It must never follow a redirect, read more than the cap, retry a request that might
have reached the API (only an idempotent one, or one that failed while being written,
on a pooled connection the server had silently closed), or put a header value in an
error message: errors name the host and the failure only.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .request import HttpRequest
from .spec import Limits, Origin

IDLE_SECONDS: Final = 20.0  # a pooled connection older than this is closed, not reused
MAX_IDLE_PER_ORIGIN: Final = 4
READ_CHUNK: Final = 64 * 1024
IDEMPOTENT: Final = frozenset({"GET", "PUT", "DELETE"})


class OriginError(Exception):
    """The request failed before an HTTP answer was read; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    content_type: str  # the header as sent, "" when absent
    body: bytes  # decoded (Content-Encoding undone); cut at the cap when not complete
    complete: bool  # False: an error answer longer than the cap, read only in part
    size: int | None  # the whole body's size when known


def tls_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying client context trusting ``SSL_CERT_FILE`` alone when it is set."""
    cafile = environ.get("SSL_CERT_FILE") or None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None)
        reason = reason or type(exc).__name__
        raise ValueError(f"SSL_CERT_FILE={cafile}: cannot load the CA bundle ({reason})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def proxy_from_env(environ: Mapping[str, str]) -> Proxy | None:
    """The explicit proxy, from ``https_proxy`` or ``HTTPS_PROXY`` (``http://host:port``)."""
    raw = environ.get("https_proxy") or environ.get("HTTPS_PROXY") or ""
    if not raw:
        return None
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError("HTTPS_PROXY is not a URL") from None
    if parts.username is not None or parts.password is not None:
        # Never echoed: the user information may be a password.
        raise ValueError("HTTPS_PROXY carries user information, which the engine does not send")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("HTTPS_PROXY must be http://<host>:<port>")
    return Proxy(parts.hostname, port or 80)


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names ``host``: ``*``, the host itself, or a parent domain."""
    host = host.lower()
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if entry.count(":") == 1:  # host:port; IPv6 literals have more colons
            entry = entry.partition(":")[0]
        entry = entry.removeprefix("*").lstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


class _Stale(Exception):
    """A pooled connection failed before the server can have acted on the request."""


_Key = tuple[str, int, Proxy | None]


class Client:
    """Sends requests; safe to use from several threads."""

    def __init__(self, limits: Limits, environ: Mapping[str, str]) -> None:
        self._limits = limits
        self._context = tls_context(environ)
        self._proxy = proxy_from_env(environ)
        self._no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
        self._idle: dict[_Key, list[tuple[http.client.HTTPSConnection, float]]] = {}
        self._lock = threading.Lock()

    def route(self, origin: Origin) -> Proxy | None:
        """The proxy a request to ``origin`` goes through, if any."""
        if self._proxy is None or bypasses_proxy(origin.host, self._no_proxy):
            return None
        return self._proxy

    def send(self, request: HttpRequest) -> HttpResponse:
        timeout = self._limits.timeout_seconds
        deadline = time.monotonic() + timeout
        key: _Key = (request.origin.host, request.origin.port, self.route(request.origin))
        try:
            for attempt in (0, 1):
                conn, reused = self._checkout(key, deadline)
                may_retry = reused and attempt == 0
                try:
                    response, keep = self._exchange(conn, request, deadline, may_retry)
                except _Stale:
                    conn.close()
                    continue
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    self._checkin(key, conn)
                else:
                    conn.close()
                return response
            raise OriginError(f"{request.origin.authority} closed the connection twice")
        except OriginError:
            raise
        except Exception as exc:  # every failure becomes one message without secrets
            raise OriginError(_describe(exc, request.origin, timeout)) from None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    def _checkout(self, key: _Key, deadline: float) -> tuple[http.client.HTTPSConnection, bool]:
        now = time.monotonic()
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn, since = conns.pop() if conns else (None, 0.0)
            if conn is None:
                break
            if now - since < IDLE_SECONDS and _still_open(conn):
                return conn, True
            conn.close()
        host, port, proxy = key
        remaining = max(deadline - now, 0.001)
        if proxy is None:
            conn = http.client.HTTPSConnection(host, port, timeout=remaining, context=self._context)
        else:
            # TLS runs inside the tunnel, end to end with the name of the API: the proxy
            # sees CONNECT host:port, and presents (or checks) that host's certificate.
            conn = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=remaining, context=self._context
            )
            conn.set_tunnel(host, port)
        return conn, False

    def _checkin(self, key: _Key, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < MAX_IDLE_PER_ORIGIN:
                conns.append((conn, time.monotonic()))
                return
        conn.close()

    def _exchange(
        self,
        conn: http.client.HTTPSConnection,
        request: HttpRequest,
        deadline: float,
        may_retry: bool,
    ) -> tuple[HttpResponse, bool]:
        _arm(conn, deadline)
        try:
            conn.request(
                request.method, request.target, body=request.body, headers=dict(request.headers)
            )
        except (BrokenPipeError, ConnectionResetError):
            if may_retry:
                raise _Stale from None
            raise
        _arm(conn, deadline)
        try:
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            if may_retry and request.method in IDEMPOTENT:
                raise _Stale from None
            raise
        try:
            body, complete, size = self._read(conn, response, deadline)
        finally:
            if response.will_close:
                response.close()
        content_type = response.getheader("Content-Type") or ""
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        body = _decode(body, encoding, self._limits.max_response_bytes, complete)
        keep = complete and not response.will_close
        return (
            HttpResponse(response.status, response.reason, content_type, body, complete, size),
            keep,
        )

    def _read(
        self, conn: http.client.HTTPSConnection, response: http.client.HTTPResponse, deadline: float
    ) -> tuple[bytes, bool, int | None]:
        cap = self._limits.max_response_bytes
        is_error = not 200 <= response.status < 300
        declared = response.getheader("Content-Length")
        size = int(declared) if declared and declared.isdigit() else None
        if size is not None and size > cap and not is_error:
            raise OriginError(
                f"the answer is {size} bytes, more than the {cap} bytes this server may return"
            )
        chunks: list[bytes] = []
        total = 0
        while True:
            _arm(conn, deadline)
            chunk = response.read1(READ_CHUNK)
            if not chunk:
                # read1 leaves a fully read Content-Length answer open; the connection
                # takes no new request until it is closed.
                response.close()
                return b"".join(chunks), True, total
            total += len(chunk)
            if total > cap:
                if is_error:
                    # An error answer is shown cut short anyway: keep the start, drop the
                    # connection rather than read the rest.
                    chunks.append(chunk)
                    return b"".join(chunks)[:cap], False, size
                raise OriginError(f"the answer is more than the {cap} bytes this server may return")
            chunks.append(chunk)


def _arm(conn: http.client.HTTPSConnection, deadline: float) -> None:
    """Bound the next socket operation by what is left of the call's deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    conn.timeout = remaining
    if conn.sock is not None:
        conn.sock.settimeout(remaining)


def _still_open(conn: http.client.HTTPSConnection) -> bool:
    """An idle connection is usable if nothing is waiting on it: readable means the
    server closed it (or sent something unasked), either way it cannot be reused."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _decode(body: bytes, encoding: str, cap: int, complete: bool) -> bytes:
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise OriginError(
            f"the answer uses content-encoding {encoding[:32]!r}, which the engine cannot decode"
        )
    # wbits 47: gzip or zlib framing, detected; raw deflate is tried when neither fits.
    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, cap + 1)
        except zlib.error:
            continue
        if len(out) > cap:
            if not complete:
                return out[:cap]
            raise OriginError(
                f"the answer inflates to more than the {cap} bytes this server may return"
            )
        return out
    if not complete:
        return b""
    raise OriginError(f"the answer is not valid {encoding} data")


def _describe(exc: BaseException, origin: Origin, timeout: float) -> str:
    where = origin.authority
    if isinstance(exc, TimeoutError):
        return f"the request to {where} timed out after {timeout:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed for {where}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {where}: {exc.reason or type(exc).__name__}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {origin.host}"
    if isinstance(exc, ConnectionRefusedError):
        return f"the connection to {where} was refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return f"{where} closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"{where} sent an invalid HTTP answer ({type(exc).__name__})"
    if isinstance(exc, OSError):
        text = str(exc)
        if text.startswith("Tunnel connection failed"):
            # http.client's message for a CONNECT answered with an error status.
            status = text.partition(":")[2].strip()[:120]
            return f"the egress proxy refused the connection to {where}: {status}"
        return f"network error talking to {where}: {exc.strerror or type(exc).__name__}"
    return f"the request to {where} failed ({type(exc).__name__})"
