"""Fetching the index: verified before parsing, rollbacks and freezes caught, the last
good copy used only when the registry cannot be reached — over file:// and over a real
HTTPS server on loopback with its own CA."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gigmcp.registry import signing
from gigmcp.registry.fetch import (
    Accepted,
    IndexFetchError,
    RegistrySource,
    Unreachable,
    fetch_index,
)
from gigmcp.registry.index import build_index
from tests.registry.samples import good

PRIVATE, PUBLIC = signing.keygen()
NOW = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def publish(folder: Path, generated: str, key: str = PRIVATE) -> bytes:
    raw = build_index([good()], generated)
    (folder / "index.json").write_bytes(raw)
    (folder / "index.json.sig").write_text(signing.sign(key, raw) + "\n")
    return raw


def source(folder: Path, **kw: object) -> RegistrySource:
    return RegistrySource(
        f"file://{folder / 'index.json'}",
        PUBLIC,
        folder / "cache",
        **kw,  # type: ignore[arg-type]
    )


async def fetch(src: RegistrySource, last: Accepted | None = None):  # type: ignore[no-untyped-def]
    return await fetch_index(src, last, now=lambda: NOW)


async def test_a_signed_index_is_accepted_and_kept(tmp_path: Path) -> None:
    raw = publish(tmp_path, "2026-11-20T00:00:00Z")
    got = await fetch(source(tmp_path))
    assert got.index.resolve("chat-mcp").name == "chat-mcp" and not got.from_cache
    assert got.generated == dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert (tmp_path / "cache" / "index.json").read_bytes() == raw
    assert got.warnings == []


@pytest.mark.parametrize("attack", ["flipped byte", "other key", "garbage signature"])
async def test_attack_an_index_not_signed_by_the_key_is_refused(
    tmp_path: Path, attack: str
) -> None:
    raw = publish(tmp_path, "2026-11-20T00:00:00Z")
    if attack == "flipped byte":
        (tmp_path / "index.json").write_bytes(raw.replace(b"chat-mcp", b"chat-mcq", 1))
    elif attack == "other key":
        publish(tmp_path, "2026-11-20T00:00:00Z", signing.keygen()[0])
    else:
        (tmp_path / "index.json.sig").write_text("zz" * 64)
    with pytest.raises(IndexFetchError, match="refused: .*GIG_REGISTRY_PUBKEY"):
        await fetch(source(tmp_path))
    assert not (tmp_path / "cache" / "index.json").exists(), "nothing kept"


async def test_attack_unparseable_bytes_are_never_parsed_unverified(tmp_path: Path) -> None:
    # A parser bug is not reachable by an attacker without the key: garbage is refused
    # for its signature, not handed to the JSON parser.
    (tmp_path / "index.json").write_bytes(b"{" * 100_000)
    (tmp_path / "index.json.sig").write_text("00" * 64)
    with pytest.raises(IndexFetchError, match="signature"):
        await fetch(source(tmp_path))


async def test_attack_a_rollback_is_refused(tmp_path: Path) -> None:
    newer = publish(tmp_path, "2026-11-20T00:00:00Z")
    last = Accepted(dt.datetime(2026, 11, 20, tzinfo=dt.UTC), _sha(newer))
    publish(tmp_path, "2026-11-10T00:00:00Z")
    with pytest.raises(IndexFetchError, match="older than the one already accepted.*rollback"):
        await fetch(source(tmp_path), last)


async def test_attack_the_same_generation_with_other_bytes_is_refused(tmp_path: Path) -> None:
    publish(tmp_path, "2026-11-20T00:00:00Z")
    last = Accepted(dt.datetime(2026, 11, 20, tzinfo=dt.UTC), "0" * 64)
    with pytest.raises(IndexFetchError, match="same generation time .* different content"):
        await fetch(source(tmp_path), last)


async def test_a_frozen_registry_is_a_warning_or_a_refusal(tmp_path: Path) -> None:
    publish(tmp_path, "2026-11-01T00:00:00Z")  # 24 days before NOW
    got = await fetch(source(tmp_path, max_age=dt.timedelta(days=14)))
    assert len(got.warnings) == 1 and "24.0 days old" in got.warnings[0]
    assert "frozen" in got.warnings[0]
    with pytest.raises(IndexFetchError, match="past GIG_REGISTRY_MAX_AGE"):
        await fetch(source(tmp_path, max_age=dt.timedelta(days=14), refuse_stale=True))
    assert (await fetch(source(tmp_path, max_age=dt.timedelta(days=30)))).warnings == []


async def test_an_unreachable_registry_falls_back_to_the_last_accepted_copy(
    tmp_path: Path,
) -> None:
    raw = publish(tmp_path, "2026-11-20T00:00:00Z")
    first = await fetch(source(tmp_path))
    last = Accepted(first.generated, first.sha256)
    (tmp_path / "index.json").unlink()
    got = await fetch(source(tmp_path), last)
    assert got.from_cache and got.raw == raw
    assert "does not exist; using the last accepted index" in got.warnings[0]
    # Nothing accepted before: nothing to fall back to.
    with pytest.raises(Unreachable, match="no index was accepted before"):
        await fetch(source(tmp_path))
    # A cached copy changed on disk is not the accepted one.
    (tmp_path / "cache" / "index.json").write_bytes(raw + b" ")
    with pytest.raises(IndexFetchError, match="not the one accepted"):
        await fetch(source(tmp_path), last)


async def test_a_url_that_is_neither_https_nor_file_is_refused(tmp_path: Path) -> None:
    src = RegistrySource("http://127.0.0.1:1/index.json", PUBLIC, tmp_path)
    with pytest.raises(IndexFetchError, match="must be https:// or file://"):
        await fetch(src)


# ------------------------------------------------------------------ over HTTPS


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    delay = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(self.delay)
        if self.path == "/moved/index.json":
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{self.server.server_address[1]}/x")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("content-length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, type[_Handler]]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    handler = type("Handler", (_Handler,), {"files": {}, "delay": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    try:
        yield f"https://localhost:{server.server_address[1]}", client, handler
    finally:
        server.shutdown()
        server.server_close()


async def test_over_https_with_a_cap_a_timeout_and_no_downgrading_redirect(
    tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    base, trust, handler = https
    publish(tmp_path, "2026-11-20T00:00:00Z")
    handler.files["/r/index.json"] = (tmp_path / "index.json").read_bytes()
    handler.files["/r/index.json.sig"] = (tmp_path / "index.json.sig").read_bytes()
    cache = tmp_path / "cache"
    good_src = RegistrySource(f"{base}/r/index.json", PUBLIC, cache, verify=trust)
    got = await fetch(good_src)
    assert got.index.resolve("chat-mcp@1.4.2").version == "1.4.2"
    # A certificate the client does not trust: unreachable, so the last good copy.
    untrusted = RegistrySource(f"{base}/r/index.json", PUBLIC, cache, verify=True)
    fallback = await fetch(untrusted, Accepted(got.generated, got.sha256))
    assert fallback.from_cache and "ConnectError" in fallback.warnings[0]
    capped = RegistrySource(f"{base}/r/index.json", PUBLIC, cache, verify=trust, max_bytes=100)
    with pytest.raises(IndexFetchError, match="larger than 100 bytes"):
        await fetch(capped)
    moved = RegistrySource(f"{base}/moved/index.json", PUBLIC, cache, verify=trust)
    with pytest.raises(IndexFetchError, match="redirects to a non-https URL"):
        await fetch(moved)
    handler.delay = 1.5
    slow = RegistrySource(f"{base}/r/index.json", PUBLIC, cache, verify=trust, timeout=0.5)
    with pytest.raises(Unreachable, match="ReadTimeout|TimeoutException|Timeout"):
        await fetch(slow)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
