"""Fetching the index: verified before parsing, rollbacks and freezes caught, the last
good copy used only when the registry cannot be reached — over file:// and over a real
HTTPS server on loopback with its own CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import ipaddress
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

from gigmcp.installer.index_fetch import (
    Accepted,
    IndexFetchError,
    RegistrySource,
    Unreachable,
    fetch_index,
)
from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.registry import signing
from gigmcp.registry.index import build_index
from tests.support.egress_lab import HOST_IP, HOST_NAMES, Lab, host_address, lab
from tests.support.registry_samples import good

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
    redirects: dict[str, str] = {}  # path -> Location
    seen: list[str] = []  # every path asked for, in order
    stop: threading.Event = threading.Event()
    delay = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        time.sleep(self.delay)
        if self.path.startswith("/drip/"):
            self._drip()
            return
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("location", self.redirects[self.path])
            self.send_header("content-length", "0")
            self.end_headers()
            return
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

    def _drip(self) -> None:
        """A registry that never finishes: one byte every 0.2 s, each well inside any
        per-read timeout, for as long as the client listens."""
        self.send_response(200)
        self.send_header("content-length", str(1 << 20))
        self.end_headers()
        while not self.stop.wait(0.2):
            try:
                self.wfile.write(b"{")
                self.wfile.flush()
            except OSError:
                return


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, type[_Handler]]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), False)
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
    handler = type(
        "Handler",
        (_Handler,),
        {"files": {}, "redirects": {}, "seen": [], "stop": threading.Event(), "delay": 0.0},
    )
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
        handler.stop.set()
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


def serve_index(tmp_path: Path, handler: type[_Handler]) -> None:
    publish(tmp_path, "2026-11-20T00:00:00Z")
    handler.files["/r/index.json"] = (tmp_path / "index.json").read_bytes()
    handler.files["/r/index.json.sig"] = (tmp_path / "index.json.sig").read_bytes()


async def test_attack_a_registry_that_drips_forever_is_cut_at_the_deadline(
    tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    base, trust, handler = https
    # Each byte comes well inside the per-read timeout; only an overall deadline ends it.
    src = RegistrySource(
        f"{base}/drip/index.json", PUBLIC, tmp_path / "cache", verify=trust, deadline=1.0
    )
    # The outer bound only turns a hang (no deadline at all) into a failure.
    with pytest.raises(Unreachable, match=r"drip/index\.json: no complete answer within the 1 s"):
        await asyncio.wait_for(fetch(src), 60)
    assert handler.seen == ["/drip/index.json"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("https://169.254.169.254/latest/meta-data/iam", "cloud-metadata"),
        ("https://10.0.0.7/index.json", "private"),
        ("https://[::1]:1/index.json", "loopback"),
        # Another spelling of the registry's own loopback server: reachable today, and
        # exactly how an internal service would be reached.
        ("https://127.0.0.1:{port}/r/index.json", "loopback"),
    ],
)
async def test_attack_a_redirect_to_an_internal_address_is_refused_before_any_connection(
    tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]], target: str, reason: str
) -> None:
    base, trust, handler = https
    serve_index(tmp_path, handler)
    handler.redirects["/go/index.json"] = target.format(port=base.rsplit(":", 1)[1])
    src = RegistrySource(f"{base}/go/index.json", PUBLIC, tmp_path / "cache", verify=trust)
    with pytest.raises(IndexFetchError, match=rf"redirect .*refused: .*{reason}") as err:
        await fetch(src)
    assert not isinstance(err.value, Unreachable), "an attack, not an outage: no fallback"
    assert handler.seen == ["/go/index.json"], "the target was never asked"


async def test_attack_a_redirect_to_a_name_that_resolves_inside_is_refused(
    tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    base, trust, handler = https
    port = base.rsplit(":", 1)[1]
    serve_index(tmp_path, handler)
    # The operator configured the loopback address; "localhost" is another host, which
    # resolves to loopback: refused, though it names the same server.
    handler.redirects["/go/index.json"] = f"https://localhost:{port}/r/index.json"
    src = RegistrySource(
        f"https://127.0.0.1:{port}/go/index.json", PUBLIC, tmp_path / "cache", verify=trust
    )
    with pytest.raises(IndexFetchError, match=r"redirect .*refused: .*resolves to .*loopback"):
        await fetch(src)
    assert handler.seen == ["/go/index.json"]


async def test_the_configured_registry_host_may_redirect_within_itself(
    tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    base, trust, handler = https
    serve_index(tmp_path, handler)
    handler.redirects["/go/index.json"] = f"{base}/r/index.json"
    handler.redirects["/go/index.json.sig"] = "/r/index.json.sig"
    got = await fetch(
        RegistrySource(f"{base}/go/index.json", PUBLIC, tmp_path / "cache", verify=trust)
    )
    assert got.index.resolve("chat-mcp").name == "chat-mcp"
    assert handler.seen == ["/go/index.json", "/r/index.json", "/go/index.json.sig",
                            "/r/index.json.sig"]  # fmt: skip


# ---------------------------------------------- redirects to the gateway host's own addresses


@pytest.fixture
def host_lab() -> Iterator[Lab]:
    """The egress lab (needs root): this thread steps into a namespace of its own whose
    primary address (11.1.0.1) is public-looking, with recording host services on it.
    Requested before ``https``, so the registry below listens in that namespace too."""
    with lab() as built:
        yield built


@pytest.mark.root
async def test_attack_a_redirect_to_the_hosts_own_primary_address_is_refused_before_any_connection(
    host_lab: Lab, tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    # 11.1.0.1 passes every special-purpose table: only the kernel knows it is this
    # host's, where the gateway's API or a container engine may listen.
    base, trust, handler = https
    serve_index(tmp_path, handler)
    handler.redirects["/go/index.json"] = f"https://{HOST_IP}/r/index.json"
    src = RegistrySource(f"{base}/go/index.json", PUBLIC, tmp_path / "cache", verify=trust)
    with pytest.raises(
        IndexFetchError, match=r"redirect .*refused: an address of this host"
    ) as err:
        await fetch(src)
    assert not isinstance(err.value, Unreachable), "an attack, not an outage: no fallback"
    assert handler.seen == ["/go/index.json"]
    assert host_lab.host_hits() == [], "a host service was reached"


@pytest.mark.root
async def test_attack_a_redirect_to_a_name_resolving_to_another_interface_of_the_host_is_refused(
    host_lab: Lab, tmp_path: Path, https: tuple[str, ssl.SSLContext, type[_Handler]]
) -> None:
    base, trust, handler = https
    serve_index(tmp_path, handler)
    handler.redirects["/go/index.json"] = "https://hostsvc.example.test/r/index.json"
    # The address is added to an interface of its own, after the namespace was built.
    with host_address(host_lab, HOST_NAMES["hostsvc.example.test"]):
        src = RegistrySource(
            f"{base}/go/index.json", PUBLIC, tmp_path / "cache", verify=trust,
            resolver=DnsResolver(host_lab.dns),
        )  # fmt: skip
        with pytest.raises(
            IndexFetchError,
            match=r"redirect .*refused: .*resolves to a blocked address \(host-address\)",
        ) as err:
            await fetch(src)
        assert not isinstance(err.value, Unreachable)
        assert handler.seen == ["/go/index.json"]
        assert host_lab.host_hits() == [], "a host service was reached"
