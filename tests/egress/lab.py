"""A small internet in a network namespace, for the egress proxy's tests.

The namespace has no route out: whatever the proxy dials, a packet can only reach an
address the lab put there. Inside:

- 10.99.0.1 — the proxy's "host end" (where it listens), 10.99.0.2 — the "sandbox"
  (clients bind to it, so the proxy sees that source address);
- public-looking upstreams: 11.0.0.1 api.example.test, 11.0.0.2 other.example.test,
  11.0.0.3 evil.example.test — HTTPS (443) and HTTP (80) servers with a test CA;
- things a broken guard would reach: 127.0.0.1, 10.99.9.9 (private), 169.254.169.254
  (metadata), ::1 — each with listeners that record every hit;
- a real DNS server (dnsmasq) at 10.99.0.53 answering the names above, and names that
  resolve to the internal addresses.

The proxy runs in-process: the calling thread steps into the namespace for the test
(sockets are created in the namespace of the thread that makes them) and back out
after. Child processes (curl, node) started meanwhile are born inside it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gzip
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gigmcp.egress.certs import CertificateAuthority

NS = "gmtest-egress"
PROXY_IP = "10.99.0.1"
SANDBOX_IP = "10.99.0.2"
OTHER_SANDBOX_IP = "10.99.0.6"
DNS_IP = "10.99.0.53"
UPSTREAMS = {
    "api.example.test": "11.0.0.1",
    "other.example.test": "11.0.0.2",
    "evil.example.test": "11.0.0.3",
}
INTERNAL = {"127.0.0.1": "loopback", "10.99.9.9": "private", "169.254.169.254": "metadata"}
DNS_NAMES = {
    **UPSTREAMS,
    "internal.example.test": "127.0.0.1",
    "private.example.test": "10.99.9.9",
    "metadata.example.test": "169.254.169.254",
}
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Hit:
    host: str
    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""


@dataclass
class Lab:
    ca: CertificateAuthority
    ca_pem: bytes
    hits: list[Hit] = field(default_factory=list)  # HTTP requests served
    connections: list[tuple[str, int]] = field(default_factory=list)  # every TCP accept
    dns: str = f"{DNS_IP}:53"

    def reset(self) -> None:
        self.hits.clear()
        self.connections.clear()

    def hits_on(self, address: str) -> list[Hit]:
        return [h for h in self.hits if h.host == address]

    def internal_hits(self) -> list[tuple[str, int]]:
        """Every connection that reached an internal address, even one that never got
        as far as an HTTP request (a TLS handshake that failed, say)."""
        return [c for c in self.connections if c[0] in INTERNAL or c[0] == "::1"]


def _handler(lab: Lab, address: str, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("content-length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _any(self) -> None:
            body = self._body()
            url = urllib.parse.urlsplit(self.path)
            hit = Hit(
                address,
                port,
                self.command,
                url.path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                url.query,
            )
            lab.hits.append(hit)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/redirect":
                self._send(302, b"", {"location": query["to"][0]})
            elif url.path == "/slow":
                time.sleep(float(query.get("s", ["2"])[0]))
                self._send(200, b"slow")
            elif url.path == "/echo-key":
                # What a careless (or hostile) upstream does: send the key back, in
                # every spelling, in the body and in headers.
                key = self.headers.get("authorization", "").split(" ", 1)[-1].encode()
                body = (
                    b"raw:"
                    + key
                    + b"|b64:"
                    + base64.b64encode(key)
                    + b"|pct:"
                    + urllib.parse.quote(key, safe="").encode()
                )
                body += b"|json:" + json.dumps({"token": key.decode()}).encode()
                body += b"|tail" * 2000 + key
                self._send(200, body, {"x-echo": key.decode(), "content-type": "text/plain"})
            elif url.path == "/echo-key-gzip":
                key = self.headers.get("authorization", "").split(" ", 1)[-1].encode()
                self._send(200, gzip.compress(b"gz:" + key), {"content-encoding": "gzip"})
            elif url.path == "/sse":
                # Server-sent events: the second comes two seconds after the first.
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b"data: one\n\n")
                self.wfile.flush()
                time.sleep(2)
                self.wfile.write(b"data: two\n\n")
                self.wfile.flush()
                self.close_connection = True
            elif url.path == "/forge":
                self._send(200, b"ok", {"x-gigmcp-denied": "forged", "x-gigmcp-other": "y"})
            elif url.path == "/ws" and self.headers.get("upgrade", "").lower() == "websocket":
                # A WebSocket endpoint that says which key it got, then echoes (the
                # proxy relays bytes after the upgrade: framing is the two ends' business).
                key = self.headers.get("authorization", "").split(" ", 1)[-1].encode()
                self.send_response(101)
                self.send_header("upgrade", "websocket")
                self.send_header("connection", "Upgrade")
                self.end_headers()
                self.wfile.write(b"ws-auth:" + key + b"\n")
                self.wfile.flush()
                while data := self.connection.recv(4096):
                    self.wfile.write(b"echo:" + data)
                    self.wfile.flush()
                self.close_connection = True
            elif url.path.startswith("/status/"):
                code = int(url.path.rsplit("/", 1)[1])
                self._send(
                    code, b'{"error":"' + b"e" * 6000 + b'"}', {"content-type": "application/json"}
                )
            elif url.path == "/big":
                n = int(query.get("n", ["1048576"])[0])
                self._send(200, b"x" * n)
            else:
                reply = {
                    "server": address, "port": port, "method": self.command, "path": url.path,
                    "headers": hit.headers, "body": body.decode("utf-8", "replace"),
                }  # fmt: skip
                self._send(200, json.dumps(reply).encode(), {"content-type": "application/json"})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        family: int,
        lab: Lab,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.address_family = family
        self.lab = lab
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Count the connection before any TLS: a guard that let the proxy dial here has
        # failed, whether or not the handshake then worked.
        self.lab.connections.append((self.server_address[0], self.server_address[1]))
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused handshake is part of the tests, not news


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    """Build the namespace, step this thread into it, serve, and undo it all."""
    if os.geteuid() != 0:
        raise RuntimeError("the egress lab needs root (network namespaces)")
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq is missing: run scripts/bootstrap")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    _ip("netns", "add", NS)
    host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    servers: list[_Server] = []
    dns: subprocess.Popen[bytes] | None = None
    tmp = Path(tempfile.mkdtemp(prefix="gmtest-egress-"))
    try:
        _ip("-n", NS, "link", "set", "lo", "up")
        for address in (
            PROXY_IP,
            SANDBOX_IP,
            OTHER_SANDBOX_IP,
            DNS_IP,
            "10.99.9.9",
            "169.254.169.254",
        ):
            _ip("-n", NS, "addr", "add", f"{address}/32", "dev", "lo")
        for address in UPSTREAMS.values():
            _ip("-n", NS, "addr", "add", f"{address}/32", "dev", "lo")
        ns_fd = os.open(f"/run/netns/{NS}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the egress lab")
        finally:
            os.close(ns_fd)
        ca = CertificateAuthority.generate("gigmcp test upstream CA")
        the_lab = Lab(ca, ca.cert_pem())
        for name, address in {**UPSTREAMS, "internal": "127.0.0.1", "private": "10.99.9.9",
                              "metadata": "169.254.169.254", "v6": "::1"}.items():  # fmt: skip
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            for port in (80, 443, 8443):
                ctx = None
                if port != 80:
                    chain, key = ca.mint_leaf(
                        name if "." in name else address, is_ip="." not in name
                    )
                    (tmp / f"{name}.pem").write_bytes(chain)
                    (tmp / f"{name}.key").write_bytes(key)
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
                handler = _handler(the_lab, address, port)
                srv = _Server((address, port), handler, family, the_lab, ctx)
                servers.append(srv)
                threading.Thread(target=srv.serve_forever, daemon=True).start()
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon",
                f"--listen-address={DNS_IP}", "--bind-interfaces", "--port=53", "--user=root",
                "--pid-file=", "--local=/example.test/", "--conf-file=/dev/null"]  # fmt: skip
        args += [f"--address=/{n}/{a}" for n, a in DNS_NAMES.items()]
        args += [
            "--address=/mixed.example.test/127.0.0.1",
            "--address=/mixed.example.test/11.0.0.1",
            # Two answers, the public one leading nowhere: a guard that fell back would
            # dial the internal one.
            "--address=/mixed-dead.example.test/127.0.0.1",
            "--address=/mixed-dead.example.test/11.0.0.9",
        ]
        args += ["--address=/v6internal.example.test/::1"]
        dns = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not _dns_up():
            if time.monotonic() > deadline or dns.poll() is not None:
                raise RuntimeError("dnsmasq did not start in the egress lab")
            time.sleep(0.02)
        yield the_lab
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
        if dns is not None:
            dns.kill()
            dns.wait()
        _libc.setns(host_fd, CLONE_NEWNET)
        os.close(host_fd)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _dns_up() -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.settimeout(0.2)
        # A minimal query for api.example.test A.
        qname = b"".join(bytes([len(p)]) + p.encode() for p in ["api", "example", "test"]) + b"\0"
        probe.sendto(
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01",
            (DNS_IP, 53),
        )
        return bool(probe.recv(512))
    except OSError:
        return False
    finally:
        probe.close()
