"""The gateway's CA and the leaves it mints, checked with real TLS handshakes."""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context


async def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> str | None:
    """Serve one TLS connection on loopback; return the ALPN protocol both agreed."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(5))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
        )
        writer.write(b"hello")
        assert await reader.read(5) == b"hello"
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        writer.close()
        return alpn  # type: ignore[no-any-return]
    finally:
        server.close()


def trusting(ca: CertificateAuthority, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    ctx.set_alpn_protocols(alpn or ["http/1.1"])
    return ctx


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate()


async def test_a_leaf_verifies_for_its_host_and_offers_only_http_1_1(
    ca: CertificateAuthority,
) -> None:
    cache = LeafCache(ca)
    ctx = await cache.context_for("api.example.test")
    assert await handshake(ctx, trusting(ca, ["h2", "http/1.1"]), "api.example.test") == "http/1.1"


async def test_a_client_that_offers_only_h2_gets_no_h2(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    try:
        alpn = await handshake(ctx, trusting(ca, ["h2"]), "api.example.test")
    except ssl.SSLError:
        return  # refused outright: also never h2
    assert alpn != "h2"


async def test_an_ip_leaf_verifies_for_the_ip(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("127.0.0.1", is_ip=True)
    assert await handshake(ctx, trusting(ca), "127.0.0.1") == "http/1.1"


async def test_attack_a_leaf_does_not_verify_for_another_host(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, trusting(ca), "other.example.test")


async def test_attack_a_client_that_trusts_only_the_system_store_rejects_the_leaf(
    ca: CertificateAuthority,
) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, ssl.create_default_context(), "api.example.test")


def test_leaves_are_short_lived_p256_server_certificates(ca: CertificateAuthority) -> None:
    chain, key_pem = ca.mint_leaf("api.example.test", is_ip=False)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.test"]
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert life <= datetime.timedelta(hours=25)
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert b"PRIVATE KEY" in key_pem


def test_the_ca_round_trips_through_pem_and_refuses_a_mismatch(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(ca.cert_pem(), ca.key_pem())
    assert again.fingerprint == ca.fingerprint
    other = CertificateAuthority.generate()
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.from_pem(ca.cert_pem(), other.key_pem())
    leaf_pem, leaf_key = ca.mint_leaf("x.example", is_ip=False)
    leaf_only = x509.load_pem_x509_certificates(leaf_pem)[0].public_bytes(
        serialization.Encoding.PEM
    )
    with pytest.raises(ValueError, match="not a CA"):
        CertificateAuthority.from_pem(leaf_only, leaf_key)


async def test_one_mint_per_host_however_many_ask_at_once(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca)
    contexts = await asyncio.gather(*[cache.context_for("same.example") for _ in range(50)])
    assert cache.mints == 1 and len({id(c) for c in contexts}) == 1


async def test_the_cache_is_bounded_least_recently_used_first(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, max_entries=2)
    for host in ("a.example", "b.example", "a.example", "c.example"):
        await cache.context_for(host)
    assert cache.mints == 3 and len(cache) == 2
    await cache.context_for("a.example")  # kept: used more recently than b
    assert cache.mints == 3
    await cache.context_for("b.example")  # evicted: minted again
    assert cache.mints == 4


async def test_the_cache_is_bounded_in_time(ca: CertificateAuthority) -> None:
    now = [1000.0]
    cache = LeafCache(ca, ttl_s=60, clock=lambda: now[0])
    await cache.context_for("t.example")
    now[0] += 59
    await cache.context_for("t.example")
    assert cache.mints == 1
    now[0] += 2
    await cache.context_for("t.example")
    assert cache.mints == 2


async def test_a_failed_mint_reaches_every_waiter_and_the_next_call_retries(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = LeafCache(ca)
    real = ca.mint_leaf

    def broken(host: str, *, is_ip: bool) -> tuple[bytes, bytes]:
        raise RuntimeError("no entropy today")

    monkeypatch.setattr(ca, "mint_leaf", broken)
    results = await asyncio.gather(
        *[cache.context_for("f.example") for _ in range(5)], return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    monkeypatch.setattr(ca, "mint_leaf", real)
    await cache.context_for("f.example")
    assert cache.mints == 1


async def test_minting_leaves_no_file_and_no_descriptor_behind(
    ca: CertificateAuthority, tmp_path: object
) -> None:
    fds = set(os.listdir("/proc/self/fd"))
    cache = LeafCache(ca)
    for i in range(20):
        await cache.context_for(f"h{i}.example")
    assert set(os.listdir("/proc/self/fd")) <= fds | {"3"}
    assert not [p for p in os.listdir(".") if p.endswith((".pem", ".key"))]


async def test_upstream_verification_takes_an_extra_bundle(ca: CertificateAuthority) -> None:
    server_ctx = await LeafCache(ca).context_for("up.example.test")
    assert await handshake(server_ctx, upstream_context(ca.cert_pem()), "up.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(server_ctx, upstream_context(), "up.example.test")
    with pytest.raises(ValueError):
        upstream_context(b"not a certificate")
