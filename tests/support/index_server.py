"""A signed registry index served over real HTTPS on loopback, for the refresher's tests
(tests/control/test_index_refresh.py): ``index.json`` and ``index.json.sig`` under
``/r/``, signed with a key made here, with a leaf for ``localhost`` from a test CA
(``toolspec_lab.make_ca``). The tests publish new generations, tamper with one, roll one
back or make the server fail (any status), and read when each request came.

Nothing here stands in for the gateway's fetcher; it is what the fetcher talks to.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gigmcp.installer.index_fetch import RegistrySource
from gigmcp.registry import signing
from gigmcp.registry.index import build_index
from tests.support.registry_samples import good
from tests.support.toolspec_lab import make_ca


@dataclass
class IndexServer:
    base: str  # https://localhost:PORT
    trust: ssl.SSLContext
    private: str
    public: str
    files: dict[str, bytes] = field(default_factory=dict)
    status: int = 200  # anything else: every request answered with it, empty
    seen: list[tuple[str, float]] = field(default_factory=list)  # (path, monotonic time)

    def publish(self, generated: str, *, tamper: bool = False) -> bytes:
        """An index generated at ``generated``, signed; ``tamper``: one byte changed
        after signing (what an attacker on the path, or on the mirror, could serve)."""
        raw = build_index([good()], generated)
        sig = signing.sign(self.private, raw).encode() + b"\n"
        self.files["/r/index.json"] = raw.replace(b"chat-mcp", b"chat-mcq", 1) if tamper else raw
        self.files["/r/index.json.sig"] = sig
        return raw

    def source(self, cache: Path, query: str = "") -> RegistrySource:
        return RegistrySource(f"{self.base}/r/index.json{query}", self.public, cache,
                              verify=self.trust)  # fmt: skip

    def fetches(self) -> list[float]:
        """When the index itself (not its signature) was asked for."""
        return [t for path, t in self.seen if path == "/r/index.json"]


@contextlib.contextmanager
def index_server(folder: Path) -> Iterator[IndexServer]:
    pki = make_ca(folder)
    private, public = signing.keygen()
    trust = ssl.create_default_context(cafile=str(pki.ca_file))
    served: list[IndexServer] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            state = served[0]
            path = self.path.split("?", 1)[0]
            state.seen.append((path, time.monotonic()))
            body = state.files.get(path) if state.status == 200 else None
            self.send_response(state.status if state.status != 200 or body else 404)
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    served.append(IndexServer(f"https://localhost:{httpd.server_address[1]}", trust, private,
                              public))  # fmt: skip
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
