"""A small internet in a network namespace, for the egress proxy's tests.

The namespace has no route out: whatever the proxy dials, a packet can only reach an
address the lab put there. Inside:

- 10.99.0.1 — the proxy's "host end" (where it listens), 10.99.0.2 — the "sandbox"
  (clients bind to it, so the proxy sees that source address);
- 11.1.0.1 — the lab host's own public-looking address (its "primary address", on a
  veth toward the upstreams), with listeners standing for host services (the gateway's
  API, a container engine's socket) that record every hit;
- public-looking upstreams, in a second namespace behind that veth (the proxy must never
  dial an address of its own host, so they are not addresses of the proxy's namespace):
  11.0.0.1 api.example.test, 11.0.0.2 other.example.test, 11.0.0.3 evil.example.test —
  HTTPS (443, 8443) and HTTP (80, 2375) servers with a test CA; ``/protected`` on them
  is a resource server that takes only a bearer token the test's check accepts;
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
import functools
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
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from gigmcp.egress.certs import CertificateAuthority

NS = "gmtest-egress"
WORLD_NS = "gmtest-egress-w"  # where the upstreams live: the proxy's "internet"
HOST_IP = "11.1.0.1"  # the lab host's primary address (its end of the veth)
WORLD_IP = "11.1.0.2"
HOST_LINK = ("gmlab-up", "gmlab-world")
# Names that resolve to addresses of the proxy's own host: its primary address, and
# addresses a test adds to an interface of its own (``host_address``), some only after
# the proxy started.
HOST_NAMES = {
    "self.example.test": HOST_IP,
    "hostsvc.example.test": "11.2.0.1",
    "late.example.test": "11.2.0.2",
}
HOST6_NAME, HOST6_IP = "host6.example.test", "2a10:9:9::1"
PROXY_IP = "10.99.0.1"
SANDBOX_IP = "10.99.0.2"
OTHER_SANDBOX_IP = "10.99.0.6"
DNS_IP = "10.99.0.53"
UPSTREAMS = {
    "api.example.test": "11.0.0.1",
    "other.example.test": "11.0.0.2",
    "evil.example.test": "11.0.0.3",
}
# Public-looking hosts a test serves itself, in the world's namespace (a remote MCP
# server, a vendor's authorization server): addresses, routes and names, no listener.
SERVICES = {
    "mcp.example.test": "11.0.0.4",
    "auth.example.test": "11.0.0.5",
    "mcp2.example.test": "11.0.0.6",
    "mcp3.example.test": "11.0.0.7",
}
INTERNAL = {"127.0.0.1": "loopback", "10.99.9.9": "private", "169.254.169.254": "metadata"}
DNS_NAMES = {
    **UPSTREAMS,
    **SERVICES,
    "internal.example.test": "127.0.0.1",
    "private.example.test": "10.99.9.9",
    "metadata.example.test": "169.254.169.254",
    **HOST_NAMES,
}
CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


# Raw answers of the /leak-* paths, KEY standing for the key the request carried: in the
# status line's reason phrase, in a header name, in an informational (1xx) answer's
# reason, header name and value, and in a trailer's name and value.
_LEAKS = {
    "/leak-reason": b"HTTP/1.1 401 invalid key KEY\r\ncontent-length: 2\r\n\r\nno",
    "/leak-header-name": b"HTTP/1.1 200 OK\r\nx-k-KEY: 1\r\ncontent-length: 2\r\n\r\nok",
    "/leak-early-hints": (
        b"HTTP/1.1 103 Early KEY\r\nlink: </KEY>\r\nx-h-KEY: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    ),
    "/leak-trailer": (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n"
        b"2\r\nok\r\n0\r\nx-t: KEY\r\nx-t-KEY: 1\r\n\r\n"
    ),
}


@functools.cache
def gzip_bomb(mib: int) -> bytes:
    """``mib`` MiB of zeros, gzipped (about a thousandth of that); made once."""
    return gzip.compress(b"\0" * (mib << 20), 9)


TEXT = 0x1


def ws_frame(
    payload: bytes, opcode: int = TEXT, fin: bool = True, mask: bytes | None = None,
    rsv1: bool = False,
) -> bytes:  # fmt: skip
    """One WebSocket frame, as RFC 6455 lays it out (masked when ``mask`` is given)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def ws_parse(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """The whole frames at the start of ``data`` as (header byte, opcode, unmasked payload),
    and the bytes after them."""
    frames = []
    while len(data) >= 2:
        n, at = data[1] & 0x7F, 2
        if n >= 126:
            width = 2 if n == 126 else 8
            if len(data) < 2 + width:
                break
            n, at = int.from_bytes(data[2 : 2 + width], "big"), 2 + width
        mask = data[at : at + 4] if data[1] & 0x80 else b""
        at += len(mask)
        if len(data) < at + n:
            break
        payload = data[at : at + n]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frames.append((data[0], data[0] & 0x0F, payload))
        data = data[at + n :]
    return frames, data


def ws_message(frames: list[tuple[int, int, bytes]]) -> bytes:
    """The payloads of data frames, joined (a message's fragments make the message)."""
    return b"".join(payload for _head, opcode, payload in frames if opcode < 0x8)


def ws_read(read: Any) -> tuple[int, bytes] | None:
    """One frame from a blocking ``read(n)``: (opcode, unmasked payload); None at the end."""
    head = read(2)
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    if n >= 126:
        n = int.from_bytes(read(2 if n == 126 else 8), "big")
    mask = read(4) if head[1] & 0x80 else b""
    payload = read(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head[0] & 0x0F, payload


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
    # ``/protected``: the bearer token's check, as a resource server makes it (None: the
    # token is good; else why not). Without one, every request there is refused.
    token_check: Callable[[str], str | None] | None = None

    def reset(self) -> None:
        self.hits.clear()
        self.connections.clear()

    def hits_on(self, address: str) -> list[Hit]:
        return [h for h in self.hits if h.host == address]

    def internal_hits(self) -> list[tuple[str, int]]:
        """Every connection that reached an internal address, even one that never got
        as far as an HTTP request (a TLS handshake that failed, say)."""
        return [c for c in self.connections if c[0] in INTERNAL or c[0] == "::1"]

    def host_hits(self) -> list[tuple[str, int]]:
        """Every connection that reached an address of the proxy's own host."""
        host = {*HOST_NAMES.values(), HOST6_IP}
        return [c for c in self.connections if c[0] in host]


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
            if url.path == "/protected":
                # A resource server: only a bearer token that passes the lab's check.
                scheme, _, token = self.headers.get("authorization", "").partition(" ")
                why = "no check set" if lab.token_check is None else "not a bearer token"
                if scheme.lower() == "bearer" and token and lab.token_check is not None:
                    why = lab.token_check(token) or ""
                if why:
                    body = json.dumps({"error": "invalid_token", "why": why}).encode()
                    self._send(401, body, {"content-type": "application/json",
                                           "www-authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
                else:
                    reply = {"ok": True, "authorization": self.headers.get("authorization")}
                    self._send(
                        200, json.dumps(reply).encode(), {"content-type": "application/json"}
                    )
            elif url.path == "/redirect":
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
            elif url.path == "/gzip-bomb":
                # A small body that inflates a thousandfold (a file the sandbox put on a
                # service it may reach, say).
                bomb = gzip_bomb(int(query.get("mib", ["48"])[0]))
                self._send(200, bomb, {"content-encoding": "gzip"})
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
            elif url.path.startswith("/leak-"):
                # An upstream that hands the key back outside the body and header values,
                # where a scrubber of bodies and values would not look.
                key = self.headers.get("authorization", "").split(" ", 1)[-1].encode()
                self.wfile.write(_LEAKS[url.path].replace(b"KEY", key))
                self.wfile.flush()
            elif url.path == "/ws" and self.headers.get("upgrade", "").lower() == "websocket":
                # A WebSocket endpoint (real frames) that says which key it got, then
                # echoes each message. Offered permessage-deflate (or told to use it
                # anyway), it accepts and sends its first message compressed, as a real
                # server would (``compress=1``: compressed without saying so).
                # ``fragment=N`` sends that message in N-byte fragments, ``pad=N`` puts N
                # bytes before the key, ``masked=1`` masks it.
                key = self.headers.get("authorization", "").split(" ", 1)[-1].encode()
                offered = "permessage-deflate" in self.headers.get("sec-websocket-extensions", "")
                says_so = offered or "deflate=always" in url.query
                deflate = says_so or "compress" in query  # compress=1: without saying so
                self.send_response(101)
                self.send_header("upgrade", "websocket")
                self.send_header("connection", "Upgrade")
                if says_so:
                    self.send_header("sec-websocket-extensions", "permessage-deflate")
                self.end_headers()
                first = b"p" * int(query.get("pad", ["0"])[0]) + b"ws-auth:" + key + b"\n"
                if deflate:
                    packer = zlib.compressobj(wbits=-15)
                    first = packer.compress(first) + packer.flush(zlib.Z_SYNC_FLUSH)
                    self.wfile.write(ws_frame(first[:-4], rsv1=True))
                elif "fragment" in query:
                    n = int(query["fragment"][0])
                    parts = [first[i : i + n] for i in range(0, len(first), n)]
                    for i, part in enumerate(parts):
                        opcode = TEXT if i == 0 else 0
                        self.wfile.write(ws_frame(part, opcode, fin=i == len(parts) - 1))
                else:
                    mask = b"\x01\x02\x03\x04" if "masked" in query else None
                    self.wfile.write(ws_frame(first, mask=mask))
                self.wfile.flush()
                while (got := ws_read(self.rfile.read)) is not None:
                    opcode, payload = got
                    if opcode == 0x8:
                        break
                    self.wfile.write(ws_frame(b"echo:" + payload, opcode))
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
    for ns in (NS, WORLD_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        _ip("netns", "add", ns)
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
        # The upstreams sit one hop away, each reached by a route of its own (11.0.0.9
        # stays unroutable: a dead public answer).
        near, far = HOST_LINK
        _ip("-n", NS, "link", "add", near, "type", "veth", "peer", "name", far, "netns", WORLD_NS)
        _ip("-n", NS, "addr", "add", f"{HOST_IP}/30", "dev", near)
        _ip("-n", NS, "link", "set", near, "up")
        _ip("-n", WORLD_NS, "link", "set", "lo", "up")
        _ip("-n", WORLD_NS, "addr", "add", f"{WORLD_IP}/30", "dev", far)
        _ip("-n", WORLD_NS, "link", "set", far, "up")
        for address in [*UPSTREAMS.values(), *SERVICES.values()]:
            _ip("-n", WORLD_NS, "addr", "add", f"{address}/32", "dev", "lo")
            _ip("-n", NS, "route", "add", f"{address}/32", "via", WORLD_IP)
        ca = CertificateAuthority.generate("gigmcp test upstream CA")
        the_lab = Lab(ca, ca.cert_pem())
        # A socket belongs to the namespace of the thread that made it: the upstreams'
        # are made in the world's, everything else in the lab's.
        _enter(WORLD_NS)
        for name, address in UPSTREAMS.items():
            servers += _serve(the_lab, tmp, name, address, (80, 443, 8443, 2375))
        _enter(NS)
        for name, address in {"internal": "127.0.0.1", "private": "10.99.9.9",
                              "metadata": "169.254.169.254", "v6": "::1",
                              "self": HOST_IP}.items():  # fmt: skip
            servers += _serve(the_lab, tmp, name, address, (80, 443, 8443, 2375))
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
        args += ["--address=/v6internal.example.test/::1", f"--address=/{HOST6_NAME}/{HOST6_IP}"]
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
        for ns in (NS, WORLD_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _enter(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
    finally:
        os.close(fd)


def _serve(lab: Lab, tmp: Path, name: str, address: str, ports: tuple[int, ...]) -> list[_Server]:
    """Recording servers on ``address``, in this thread's namespace: TLS (a leaf from the
    lab's CA) on 443 and 8443, plain HTTP on the others."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    out: list[_Server] = []
    for port in ports:
        ctx = None
        if port in (443, 8443):
            chain, key = lab.ca.mint_leaf(name if "." in name else address, is_ip="." not in name)
            (tmp / f"{name}.pem").write_bytes(chain)
            (tmp / f"{name}.key").write_bytes(key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
        srv = _Server((address, port), _handler(lab, address, port), family, lab, ctx)
        out.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    return out


def in_world(make: Callable[[], T]) -> T:
    """``make()`` run in a thread of its own that stepped into the world's namespace:
    a socket it makes belongs to the world (the calling thread stays where it is)."""
    out: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            _enter(WORLD_NS)
            out.append(make())
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=run, name="in-world")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]


def world_command(*argv: str) -> list[str]:
    """``argv`` run in the world's namespace (where the upstreams and ``SERVICES`` live)."""
    return ["ip", "netns", "exec", WORLD_NS, *argv]


def mint_cert(the_lab: Lab, name: str, folder: Path) -> tuple[Path, Path]:
    """A TLS certificate for ``name`` from the lab's CA (which the gateway trusts):
    (chain file, key file)."""
    chain, key = the_lab.ca.mint_leaf(name, is_ip=False)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(chain)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert_path, key_path


@contextlib.contextmanager
def host_address(the_lab: Lab, address: str, link: str = "gmlab-h0") -> Iterator[None]:
    """Give the proxy's own host one more address, on a veth made for it, with
    recording host services on it (HTTP 80 and 2375, TLS 443): what a name pointing
    at the host's own address would reach. Call it from inside the lab. Undone after."""
    _ip("link", "add", link, "type", "veth", "peer", "name", f"{link}p")
    servers: list[_Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="gmtest-hostaddr-"))
    try:
        if ":" in address:
            _ip("addr", "add", f"{address}/128", "dev", link, "nodad")
        else:
            _ip("addr", "add", f"{address}/32", "dev", link)
        _ip("link", "set", link, "up")
        servers = _serve(the_lab, tmp, "hostsvc", address, (80, 443, 2375))
        yield
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
        subprocess.run(["ip", "link", "del", link], capture_output=True)
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
