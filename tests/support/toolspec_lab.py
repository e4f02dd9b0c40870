"""Loopback peers for the toolspec engine's tests: a CA, an HTTPS upstream, a tunnel.

- ``make_ca`` writes a test CA and a leaf for ``localhost`` plus the API hosts the tests
  call through the tunnel, both minted with ``cryptography``; the engine trusts the CA
  through ``SSL_CERT_FILE``, exactly as it trusts the egress proxy's CA in the jail.
- ``Upstream`` is a real HTTPS server (``http.server`` over ``ssl``) on 127.0.0.1 that
  records every request it receives (method, raw target, headers, body) and answers
  from a few routes the tests choose by path.
- ``Tunnel`` is a plain HTTP CONNECT proxy on 127.0.0.1: it records each CONNECT target
  and pipes the bytes to the upstream, whatever host was asked for (like the jail's
  only route out, it is the one way anywhere). It does not swap placeholders: that is
  the gateway's egress proxy, tested end to end elsewhere.

Nothing here stands in for the engine; it is what the engine talks to.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# API hosts of catalog toolspecs called through the tunnel (their own baseUrl, unchanged).
API_HOSTS = ("api.airtable.com", "api.chatwork.com", "api.harvestapp.com")


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path  # a CA that signed nothing the upstream presents


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_ca(folder: Path) -> Pki:
    ca_key, ca_cert = _ca("toolspec engine test CA")
    _, other_cert = _ca("an unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.DNSName(h) for h in API_HOSTS]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key", folder / "other-ca.pem")
    pki.ca_file.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca_file.write_bytes(other_cert.public_bytes(pem))
    pki.cert_file.write_bytes(leaf.public_bytes(pem))
    pki.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    target: str  # exactly as on the request line
    headers: dict[str, str]  # lowercased names
    body: bytes
    client_port: int  # the connection it came on

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> list[tuple[str, str]]:
        return urllib.parse.parse_qsl(self.target.partition("?")[2], keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Upstream:
    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    # When a test sets this, ``/slow/`` answers wait for it (then sleep as asked): the
    # test decides when a call under way ends, instead of racing a sleep.
    gate: threading.Event | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def clear(self) -> None:
        self.seen.clear()
        if self.gate is not None:
            self.gate.set()  # nothing stays held past the test that held it
        self.gate = None

    def wait_seen(self, path: str, timeout: float = 60.0) -> bool:
        """Wait until a request for ``path`` arrived (the bound only catches a hang)."""
        deadline = time.monotonic() + timeout
        while not any(s.path == path for s in self.seen):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _answer(handler: BaseHTTPRequestHandler, seen: Seen) -> tuple[int, dict[str, str], bytes]:
    """What the upstream sends back, chosen by the first path segment."""
    parts = seen.path.split("/")
    route = parts[1] if len(parts) > 1 else ""
    if route == "status":  # /status/<code>: an error with a body longer than 4 KiB
        code = int(parts[2])
        body = b'{"error":"' + b"x" * 6000 + b'"}'
        return code, {"Content-Type": "application/json"}, body
    if route == "text":
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, "plain words, été".encode()
    if route == "array":
        return 200, {"Content-Type": "application/json"}, b'[1,2,{"a":3}]'
    if route == "empty":
        return 204, {}, b""
    if route == "big":  # more than the engine's cap in the tests that set one
        return 200, {"Content-Type": "application/json"}, b'{"data":"' + b"y" * 300_000 + b'"}'
    if route == "gzip":
        body = gzip.compress(b'{"compressed":true}')
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, body
    if route == "bomb":  # 64 KiB on the wire, 64 MiB inflated
        body = gzip.compress(b"\0" * (64 * 2**20), compresslevel=9)
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, body
    if route == "binary":
        return 200, {"Content-Type": "application/octet-stream"}, bytes(range(256))
    if route == "image":
        return 200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\nfake"
    if route == "slow":
        time.sleep(float(parts[2]))
        return 200, {"Content-Type": "application/json"}, b'{"slow":true}'
    if route == "redirect":
        return (
            302,
            {"Location": "https://elsewhere.example/", "Content-Type": "text/plain"},
            b"moved",
        )
    echo = {"ok": True, "method": seen.method, "path": seen.path}
    return 200, {"Content-Type": "application/json"}, json.dumps(echo).encode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is what some tests do on purpose (size caps).
        pass


def start_upstream(pki: Pki) -> Upstream:
    holder: list[Upstream] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen = Seen(self.command, self.path, headers, body, self.client_address[1])
            holder[0].seen.append(seen)
            gate = holder[0].gate
            if gate is not None and seen.path.startswith("/slow/"):
                gate.wait(60)
            status, extra, payload = _answer(self, seen)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    upstream = Upstream(server)
    holder.append(upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return upstream


@dataclass
class Tunnel:
    server: socketserver.ThreadingTCPServer
    targets: list[str] = field(default_factory=list)  # "host:port" of each CONNECT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def start_tunnel(upstream_port: int, allowed: tuple[str, ...]) -> Tunnel:
    holder: list[Tunnel] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            method, target, _ = line.split(" ", 2)
            holder[0].targets.append(target)
            host = target.rpartition(":")[0]
            if method != "CONNECT" or host not in allowed:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(5)
            upstream.close()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tunnel = Tunnel(server)
    holder.append(tunnel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return tunnel
