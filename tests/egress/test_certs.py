"""The gateway's CA and the leaves it mints, checked with real TLS handshakes on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gigmcp.egress.certs import (
    CertificateAuthority,
    LeafCache,
    server_context,
    upstream_context,
)

HOUR = 3600.0


async def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> str | None:
    """Serve one TLS connection on loopback, echo five bytes through it, and return the
    ALPN protocol the client ended up with."""

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
        assert await reader.readexactly(5) == b"hello"
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        writer.close()
        return alpn  # type: ignore[no-any-return]
    finally:
        server.close()
        await server.wait_closed()


def trusting(ca: CertificateAuthority, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client that trusts only ``ca``, as a sandbox does."""
    ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    ctx.set_alpn_protocols(alpn or ["http/1.1"])
    return ctx


def fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the descriptor os.listdir used, closed since
        return ""


def leaf_of(chain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain)[0]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate()


# -- handshakes ------------------------------------------------------------------------


async def test_a_leaf_verifies_for_its_host_and_negotiates_http_1_1(
    ca: CertificateAuthority,
) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    assert await handshake(ctx, trusting(ca, ["h2", "http/1.1"]), "api.example.test") == "http/1.1"


async def test_a_client_offering_only_h2_gets_no_alpn_and_talks_on(
    ca: CertificateAuthority,
) -> None:
    # What Python's server does with no overlap: no ALPN extension in the answer (not a
    # fatal alert), so the client knows h2 was not agreed; it may speak HTTP/1.1 or leave.
    ctx = await LeafCache(ca).context_for("api.example.test")
    assert await handshake(ctx, trusting(ca, ["h2"]), "api.example.test") is None


async def test_an_ip_leaf_verifies_for_the_ip(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("127.0.0.1", is_ip=True)
    assert await handshake(ctx, trusting(ca), "127.0.0.1") == "http/1.1"


async def test_attack_a_leaf_does_not_verify_for_another_host(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, trusting(ca), "other.example.test")


async def test_attack_an_ip_leaf_does_not_verify_for_another_ip(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(ca).context_for("127.0.0.1", is_ip=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, trusting(ca), "127.0.0.2")


async def test_attack_a_client_that_trusts_only_the_system_store_rejects_the_leaf(
    ca: CertificateAuthority,
) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, ssl.create_default_context(), "api.example.test")


async def test_attack_a_leaf_from_another_ca_is_rejected(ca: CertificateAuthority) -> None:
    ctx = await LeafCache(CertificateAuthority.generate()).context_for("api.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(ctx, trusting(ca), "api.example.test")


async def test_the_server_context_refuses_anything_older_than_tls_1_2(
    ca: CertificateAuthority,
) -> None:
    ctx = await LeafCache(ca).context_for("api.example.test")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE  # sandboxes are told apart by address, not certs


# -- what a leaf is ---------------------------------------------------------------------


def test_a_leaf_is_a_short_lived_p256_server_certificate_for_one_name(
    ca: CertificateAuthority,
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    chain, key_pem = ca.mint_leaf("api.example.test", is_ip=False)
    leaf = leaf_of(chain)
    ext = leaf.extensions

    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == []
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["api.example.test"]

    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    leaf.verify_directly_issued_by(ca.cert)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)

    assert leaf.not_valid_before_utc <= before <= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(hours=25)
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == public, "the key returned is the leaf's own"
    assert x509.load_pem_x509_certificates(chain)[1] == ca.cert, "the chain ends with the CA"


def test_every_leaf_has_its_own_key_and_serial(ca: CertificateAuthority) -> None:
    leaves = [leaf_of(ca.mint_leaf(h, is_ip=False)[0]) for h in ("a.test", "b.test", "a.test")]
    keys = {
        leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for leaf in leaves
    }
    assert len(keys) == 3, "no key is reused, not even for the same host"
    assert len({leaf.serial_number for leaf in leaves}) == 3


@pytest.mark.parametrize("ip", ["127.0.0.1", "2001:db8::1"])
def test_an_ip_leaf_names_the_ip_in_a_critical_san_and_has_no_common_name(
    ca: CertificateAuthority, ip: str
) -> None:
    leaf = leaf_of(ca.mint_leaf(ip, is_ip=True)[0])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical, "an empty subject requires a critical SAN (RFC 5280 4.2.1.6)"
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(ip)]
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []


def test_a_long_name_is_cut_to_64_in_the_common_name_and_kept_whole_in_the_san(
    ca: CertificateAuthority,
) -> None:
    host = ".".join(["a" * 40] * 4) + ".test"  # 168 characters, every label legal
    leaf = leaf_of(ca.mint_leaf(host, is_ip=False)[0])
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host[:64]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]


@pytest.mark.parametrize(("host", "is_ip"), [("*.example.test", False), ("", False), ("x", True)])
def test_attack_no_leaf_for_a_wildcard_an_empty_name_or_a_non_ip(
    ca: CertificateAuthority, host: str, is_ip: bool
) -> None:
    with pytest.raises(ValueError):
        ca.mint_leaf(host, is_ip=is_ip)


# -- the CA -----------------------------------------------------------------------------


def test_the_ca_is_a_p256_ca_for_leaves_only_valid_ten_years() -> None:
    before = datetime.datetime.now(datetime.UTC)
    ca = CertificateAuthority.generate("unit CA")
    cert = ca.cert
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "unit CA"
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.version == x509.Version.v3
    assert 0 < cert.serial_number < 2**159
    assert cert.not_valid_before_utc <= before
    life = cert.not_valid_after_utc - before
    assert datetime.timedelta(days=3640) < life <= datetime.timedelta(days=3651)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"


async def test_the_ca_round_trips_through_pem_and_still_signs_trusted_leaves(
    ca: CertificateAuthority,
) -> None:
    assert ca.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    again = CertificateAuthority.from_pem(ca.cert_pem(), ca.key_pem())
    assert again.fingerprint == ca.fingerprint
    assert len(ca.fingerprint) == 64 and int(ca.fingerprint, 16) >= 0
    ctx = await LeafCache(again).context_for("round.example.test")
    assert await handshake(ctx, trusting(ca), "round.example.test") == "http/1.1"


def test_from_pem_refuses_a_key_that_is_not_the_certificates(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.from_pem(ca.cert_pem(), CertificateAuthority.generate().key_pem())


def test_from_pem_refuses_a_certificate_that_is_not_a_ca(ca: CertificateAuthority) -> None:
    chain, leaf_key = ca.mint_leaf("x.example", is_ip=False)
    leaf_pem = leaf_of(chain).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="not a CA"):
        CertificateAuthority.from_pem(leaf_pem, leaf_key)


def test_from_pem_refuses_garbage_and_encrypted_keys_without_echoing_them(
    ca: CertificateAuthority,
) -> None:
    with pytest.raises(ValueError, match="not a PEM certificate"):
        CertificateAuthority.from_pem(b"nonsense", ca.key_pem())
    key = serialization.load_pem_private_key(ca.key_pem(), password=None)
    sealed = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    for bad_key in (sealed, ca.key_pem()[:-40]):
        with pytest.raises(ValueError, match="not an unencrypted PEM private key") as caught:
            CertificateAuthority.from_pem(ca.cert_pem(), bad_key)
        assert "PRIVATE" not in str(caught.value)


def test_the_ca_repr_carries_no_key(ca: CertificateAuthority) -> None:
    body = b"".join(ca.key_pem().splitlines()[1:-1]).decode()
    assert body[:16] not in repr(ca) and "PRIVATE" not in repr(ca)
    assert ca.fingerprint[:16] in repr(ca)


# -- the cache --------------------------------------------------------------------------


async def test_one_mint_per_host_however_many_ask_at_once(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca)
    contexts = await asyncio.gather(*[cache.context_for("same.example") for _ in range(50)])
    assert cache.mints == 1 and len({id(c) for c in contexts}) == 1


async def test_a_caller_that_gives_up_does_not_cancel_the_mint_others_wait_for(
    ca: CertificateAuthority,
) -> None:
    cache = LeafCache(ca)
    first = asyncio.create_task(cache.context_for("x.example"))
    await asyncio.sleep(0)  # the first caller starts the mint
    second = asyncio.create_task(cache.context_for("x.example"))
    await asyncio.sleep(0)
    first.cancel()
    assert isinstance(await second, ssl.SSLContext)
    assert first.cancelled()
    assert cache.mints == 1 and len(cache) == 1


async def test_the_cache_is_bounded_least_recently_used_first(ca: CertificateAuthority) -> None:
    cache = LeafCache(ca, max_entries=2)
    for host in ("a.example", "b.example", "a.example", "c.example"):
        await cache.context_for(host)
    assert cache.mints == 3 and len(cache) == 2
    await cache.context_for("a.example")  # kept: used more recently than b
    assert cache.mints == 3
    await cache.context_for("b.example")  # evicted: minted again
    assert cache.mints == 4 and len(cache) == 2


async def test_a_name_and_an_ip_spelled_alike_are_different_entries(
    ca: CertificateAuthority,
) -> None:
    cache = LeafCache(ca)
    await cache.context_for("127.0.0.1", is_ip=True)
    await cache.context_for("127.0.0.1", is_ip=False)
    assert cache.mints == 2


async def test_the_cache_is_bounded_in_time(ca: CertificateAuthority) -> None:
    now = [1000.0]
    cache = LeafCache(ca, ttl_s=60, clock=lambda: now[0])
    first = await cache.context_for("t.example")
    now[0] += 59
    assert await cache.context_for("t.example") is first
    now[0] += 2
    assert await cache.context_for("t.example") is not first
    assert cache.mints == 2 and len(cache) == 1


async def test_a_leaf_near_its_wall_clock_expiry_is_reminted_even_if_the_host_slept(
    ca: CertificateAuthority,
) -> None:
    # CLOCK_MONOTONIC stands still while the host is suspended; the leaf's expiry does not.
    wall = [datetime.datetime.now(datetime.UTC).timestamp()]
    cache = LeafCache(ca, clock=lambda: 0.0, wall_clock=lambda: wall[0])
    first = await cache.context_for("sleepy.example")
    wall[0] += 22 * HOUR
    assert await cache.context_for("sleepy.example") is first
    wall[0] += 1.5 * HOUR  # 23.5 hours: within the hour before the leaf expires
    assert await cache.context_for("sleepy.example") is not first
    assert cache.mints == 2


async def test_a_leaf_not_yet_valid_after_the_wall_clock_went_back_is_reminted(
    ca: CertificateAuthority,
) -> None:
    wall = [datetime.datetime.now(datetime.UTC).timestamp()]
    cache = LeafCache(ca, clock=lambda: 0.0, wall_clock=lambda: wall[0])
    first = await cache.context_for("rewound.example")
    wall[0] -= 2 * HOUR  # before the leaf's notBefore (backdated by one hour)
    assert await cache.context_for("rewound.example") is not first


def test_the_cache_never_keeps_a_leaf_past_half_its_life(ca: CertificateAuthority) -> None:
    assert LeafCache(ca).ttl_s <= 12 * HOUR
    for bad in (12 * HOUR + 1, 0, -1):
        with pytest.raises(ValueError, match="ttl_s"):
            LeafCache(ca, ttl_s=bad)
    with pytest.raises(ValueError, match="max_entries"):
        LeafCache(ca, max_entries=0)


async def test_a_failed_mint_reaches_every_waiter_and_the_next_call_retries(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = LeafCache(ca)
    real = ca.mint_leaf
    calls = []

    def broken(host: str, *, is_ip: bool) -> tuple[bytes, bytes]:
        calls.append(host)
        raise RuntimeError("no entropy today")

    monkeypatch.setattr(ca, "mint_leaf", broken)
    results = await asyncio.gather(
        *[cache.context_for("f.example") for _ in range(5)], return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == ["f.example"], "one attempt for all five waiters"
    assert cache.mints == 0 and len(cache) == 0
    monkeypatch.setattr(ca, "mint_leaf", real)
    assert isinstance(await cache.context_for("f.example"), ssl.SSLContext)
    assert cache.mints == 1


async def test_minting_runs_off_the_event_loop_thread(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads = []
    real = ca.mint_leaf

    def watched(host: str, *, is_ip: bool) -> tuple[bytes, bytes]:
        threads.append(threading.get_ident())
        return real(host, is_ip=is_ip)

    monkeypatch.setattr(ca, "mint_leaf", watched)
    await LeafCache(ca).context_for("thread.example")
    assert threads and loop_thread not in threads


async def test_no_key_touches_a_file_and_no_descriptor_is_left_open(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    loaded = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None) -> None:
        loaded.append((certfile, keyfile))
        real_load(self, certfile, keyfile)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    cache = LeafCache(ca)
    await cache.context_for("warm.example")  # the worker thread exists from here on
    fds_before = sorted(os.listdir("/proc/self/fd"))
    for i in range(20):
        await cache.context_for(f"h{i}.example")
    fds_after = sorted(os.listdir("/proc/self/fd"))

    assert fds_after == fds_before, "every memfd is closed once its context is loaded"
    assert not [fd for fd in fds_after if "memfd:gigmcp" in fd_target(fd)]
    assert len(loaded) == 21
    for certfile, keyfile in loaded:
        assert certfile.startswith("/proc/self/fd/") and keyfile == certfile
    assert list(tmp_path.iterdir()) == [], "nothing written to the working directory"
    new_in_tmp = set(os.listdir(tempfile.gettempdir())) - tmp_before
    assert not [n for n in new_in_tmp if n.endswith((".pem", ".key", ".crt")) or "key" in n]


# -- toward upstreams -------------------------------------------------------------------


async def test_upstream_verification_takes_an_extra_bundle() -> None:
    test_ca = CertificateAuthority.generate("test upstream CA")
    server_ctx = server_context(*test_ca.mint_leaf("up.example.test", is_ip=False))
    assert await handshake(server_ctx, upstream_context(test_ca.cert_pem()), "up.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(server_ctx, upstream_context(), "up.example.test")


async def test_attack_the_extra_bundle_does_not_switch_off_hostname_checks() -> None:
    test_ca = CertificateAuthority.generate("test upstream CA")
    server_ctx = server_context(*test_ca.mint_leaf("up.example.test", is_ip=False))
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(server_ctx, upstream_context(test_ca.cert_pem()), "evil.example.test")


def test_the_upstream_context_verifies_and_speaks_http_1_1_over_tls_1_2_or_later() -> None:
    ctx = upstream_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_extra_bundle_may_carry_comments_in_any_script(ca: CertificateAuthority) -> None:
    bundle = "# Issuer: CN=Türkiye Örnek Kök\n".encode() + ca.cert_pem()
    stats = upstream_context(bundle).cert_store_stats()
    assert stats["x509"] == upstream_context().cert_store_stats()["x509"] + 1


def test_an_extra_bundle_of_certificates_the_system_already_trusts_is_accepted() -> None:
    system = ssl.create_default_context().get_ca_certs(binary_form=True)
    if not system:
        pytest.skip("no system trust store on this machine")
    pem = ssl.DER_cert_to_PEM_cert(system[0]).encode()
    assert upstream_context(pem).cert_store_stats() == upstream_context().cert_store_stats()


@pytest.mark.parametrize(
    "bundle",
    [
        b"",
        b"not a certificate",
        b"# only a comment\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_an_extra_bundle_without_a_certificate_is_refused_clearly(bundle: bytes) -> None:
    with pytest.raises(ValueError, match="extra CA bundle"):
        upstream_context(bundle)
