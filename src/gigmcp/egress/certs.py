"""Certificates for TLS interception: the gateway's CA, leaves minted per host, and the
TLS context toward upstreams.

ECDSA P-256 throughout: a P-256 key costs about a hundredth of a millisecond to make,
an RSA key tens of milliseconds, which would dominate a cold cache. Leaves live only in
memory, for a day, in an LRU cache with a time bound; concurrent requests for one host
wait for a single mint. Minting runs in a worker thread so a cold cache never stalls
the event loop.

Owns making and caching certificates and SSL contexts. It must never write a private
key to disk (``load_cert_chain`` reads files, so keys go through an anonymous memfd that
is closed at once), never log one, and never offer the sandbox anything but HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LEAF_LIFETIME = datetime.timedelta(hours=24)
BACKDATE = datetime.timedelta(hours=1)


def _serial() -> int:
    return secrets.randbits(159) | 1


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def generate(cls, common_name: str = "Gig'MCP egress CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError("the CA key does not match the CA certificate")
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            basic = None
        if basic is None or not basic.ca:
            raise ValueError("the certificate is not a CA certificate")
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        return self._cert_pem

    def key_pem(self) -> bytes:
        """PKCS#8, unencrypted: the caller seals it in the vault."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def mint_leaf(self, host: str, *, is_ip: bool) -> tuple[bytes, bytes]:
        """(leaf + CA chain PEM, leaf key PEM) for ``host`` (a canonical name or IP)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        san: x509.GeneralName = (
            x509.IPAddress(ipaddress.ip_address(host)) if is_ip else x509.DNSName(host)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(host) if not is_ip else x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + LEAF_LIFETIME)
            .add_extension(x509.SubjectAlternativeName([san]), critical=is_ip)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        leaf = builder.sign(self._key, hashes.SHA256())
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self._cert_pem
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return chain, key_pem

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority({self.cert.subject.rfc4514_string()}, {self.fingerprint[:16]})"
        )


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server-side context for one leaf, offering HTTP/1.1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    fd = os.memfd_create("gigmcp-leaf", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + key_pem)
        path = f"/proc/self/fd/{fd}"
        ctx.load_cert_chain(path, path)
    finally:
        os.close(fd)
    return ctx


class LeafCache:
    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        max_entries: int = 1024,
        ttl_s: float = 12 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ca = ca
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[tuple[str, bool], tuple[float, ssl.SSLContext]] = OrderedDict()
        self._inflight: dict[tuple[str, bool], asyncio.Future[ssl.SSLContext]] = {}
        self.mints = 0

    def __len__(self) -> int:
        return len(self._cache)

    async def context_for(self, host: str, *, is_ip: bool = False) -> ssl.SSLContext:
        key = (host, is_ip)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            self._cache.move_to_end(key)
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ssl.SSLContext] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            ctx = await asyncio.to_thread(self._mint, host, is_ip)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            self._inflight.pop(key, None)
        self.mints += 1
        self._cache[key] = (self._clock(), ctx)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        future.set_result(ctx)
        return ctx

    def _mint(self, host: str, is_ip: bool) -> ssl.SSLContext:
        chain, key = self.ca.mint_leaf(host, is_ip=is_ip)
        return server_context(chain, key)


def upstream_context(extra_ca_pem: bytes | None = None) -> ssl.SSLContext:
    """The proxy's client context toward upstreams: verified, hostname checked."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if extra_ca_pem:
        before = ctx.cert_store_stats()["x509_ca"]
        try:
            ctx.load_verify_locations(cadata=extra_ca_pem.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise ValueError(f"the extra CA bundle is not PEM certificates: {exc}") from None
        if ctx.cert_store_stats()["x509_ca"] == before:
            raise ValueError("the extra CA bundle holds no CA certificate")
    return ctx
