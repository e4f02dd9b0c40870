"""Registries on loopback for the tests: the real one, its token server, a hostile one.

* :func:`start_registry` runs Debian's ``docker-registry`` (the distribution project's
  registry) on 127.0.0.1 with a random port and a temp storage folder; with a
  :class:`TokenServer` it is configured with ``auth: token`` and trusts only that
  server's signing certificate (generated here), so pulls must go through the real
  Bearer challenge.
* :class:`TokenServer` issues JWTs the way Docker's token services do: anonymous
  callers get ``pull`` only, the pusher's Basic credentials get ``push`` too.
* :class:`FakeRegistry` is a tiny HTTP server that says whatever a test tells it to:
  altered bytes, lies about sizes, redirects, hostile realms. It stands in for a
  compromised registry, for the cases the real one would refuse to store or serve.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import jwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.oci_images import OCI_INDEX, OCI_MANIFEST, ImageSet, sha

REGISTRY_BINARY = "/usr/bin/docker-registry"
SERVICE = "gig-test-registry"
ISSUER = "gig-test-token-issuer"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- token server --------------------------------------------------------------------


@dataclass
class TokenRequest:
    anonymous: bool
    service: str
    scopes: list[str]


class TokenServer:
    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gig test token signer")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.pusher = ("pusher", secrets.token_urlsafe(12))
        self.requests: list[TokenRequest] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                body, status = server.answer(url.path, query, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, path: str, query: dict[str, list[str]], auth: str | None) -> tuple[bytes, int]:
        if path != "/token":
            return b"{}", 404
        pusher = False
        if auth:
            expected = base64.b64encode(":".join(self.pusher).encode()).decode()
            if auth != f"Basic {expected}":
                return b'{"details": "bad credentials"}', 401
            pusher = True
        service = query.get("service", [""])[0]
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        self.requests.append(TokenRequest(not pusher, service, scopes))
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a == "pull" or (pusher and a == "push")]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "pusher" if pusher else "",
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        token = jwt.encode(
            claims,
            self.key,
            algorithm="ES256",
            headers={"x5c": [base64.b64encode(der).decode()]},
        )
        return json.dumps({"token": token, "expires_in": 300}).encode(), 200

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the real registry ---------------------------------------------------------------


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:port
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    token_server: TokenServer | None = None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "registry.log").read_text()[-2000:]
        return ""


def start_registry(
    token_server_for: Callable[[Path], TokenServer] | None = None,
) -> RunningRegistry:
    workdir = Path(tempfile.mkdtemp(prefix="gig-oci-registry-"))
    token_server = token_server_for(workdir) if token_server_for else None
    port = free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if token_server is not None:
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(token_server.bundle),
            }
        }
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(workdir / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    running = RunningRegistry(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", proc, workdir, token_server
    )
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            stop_registry(running)
            raise RuntimeError(f"docker-registry exited at start:\n{running.log_tail()}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"{running.url}/v2/", timeout=1, trust_env=False).status_code in (
                200,
                401,
            ):
                return running
        if time.monotonic() > deadline:
            stop_registry(running)
            raise RuntimeError(f"docker-registry did not answer:\n{running.log_tail()}")
        time.sleep(0.05)


def stop_registry(running: RunningRegistry) -> None:
    if running.proc.poll() is None:
        running.proc.terminate()
        try:
            running.proc.wait(5)
        except subprocess.TimeoutExpired:
            running.proc.kill()
            running.proc.wait()
    if running.token_server is not None:
        running.token_server.close()
    shutil.rmtree(running.workdir, ignore_errors=True)


# -- the hostile registry ------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Sent with no Content-Length, until the client hangs up: a body that never ends.
    endless: bool = False
    # A Content-Length larger than the body, then the connection closes: a cut transfer.
    declared_length: int | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class FakeRegistry:
    """Loopback HTTP server answering from a route table; records every request."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Reply | Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.sent_bytes = 0
        self.hung_up = 0  # endless bodies the client stopped reading
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                fake.seen.append(seen)
                route = fake.routes.get(urllib.parse.urlsplit(self.path).path)
                if route is None:
                    reply = Reply(404, {"Content-Type": "application/json"},
                                  b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')  # fmt: skip
                else:
                    reply = route(seen) if callable(route) else route
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.endless:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = b"\0" * 65536
                    try:
                        for _ in range(4096):  # 256 MiB at most
                            self.wfile.write(chunk)
                            fake.sent_bytes += len(chunk)
                    except OSError:
                        fake.hung_up += 1
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                if reply.declared_length:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"{host}:{self.port}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, repo: str, images: ImageSet) -> str:
        """Serve an image set as a registry would; returns its digest."""
        for digest, data in images.blobs.items():
            self.routes[f"/v2/{repo}/blobs/{digest}"] = Reply(
                200, {"Content-Type": "application/octet-stream"}, data
            )
        for m in images.manifests:
            self.routes[f"/v2/{repo}/manifests/{sha(m)}"] = Reply(
                200, {"Content-Type": OCI_MANIFEST}, m
            )
        if images.index is not None:
            self.routes[f"/v2/{repo}/manifests/{sha(images.index)}"] = Reply(
                200, {"Content-Type": OCI_INDEX}, images.index
            )
        return images.digest

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def fake_registry(host: str = "127.0.0.1") -> Iterator[FakeRegistry]:
    fake = FakeRegistry(host)
    try:
        yield fake
    finally:
        fake.close()


def binary_available() -> bool:
    return os.access(REGISTRY_BINARY, os.X_OK)
