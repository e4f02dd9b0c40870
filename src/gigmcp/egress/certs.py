"""Certificates for TLS interception: the gateway's CA, leaves minted per host, and the
TLS context toward upstreams.

ECDSA P-256 throughout: a P-256 key costs about a hundredth of a millisecond to make,
an RSA key tens of milliseconds, which would dominate a cold cache; so every leaf gets a
fresh key and no key is ever shared between hosts. Leaves live only in memory, for a
day, in an LRU cache with a time bound that re-mints them half-way through their life;
concurrent requests for one host wait for a single mint. Minting runs in a worker thread
so a cold cache never stalls the event loop.

Owns making and caching certificates and SSL contexts. It must never write a private
key to disk (``load_cert_chain`` reads only files, so keys go through an anonymous memfd
that is closed at once), never log one (no ``repr`` or message here carries key
material), and never offer the sandbox anything but HTTP/1.1.
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
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
# Short on purpose: leaves never leave memory, so nothing is gained by making them last.
# The CA/Browser Forum's limits are beside the point here: the clients are sandboxed
# programs trusting only this CA, not browsers.
LEAF_LIFETIME = datetime.timedelta(hours=24)
# Backdated so a client whose clock runs a little behind still accepts a fresh leaf.
BACKDATE = datetime.timedelta(hours=1)
# The cache may keep a leaf for at most half its life: a context handed out is always
# far from expiry, whatever the caller configures.
MAX_TTL_S = LEAF_LIFETIME.total_seconds() / 2
# Independently of the (monotonic) TTL, a leaf this close to its wall-clock expiry is
# re-minted: CLOCK_MONOTONIC stops while the host is suspended, the wall clock does not.
EXPIRY_MARGIN_S = 3600.0
MAX_CN = 64  # ub-common-name (RFC 5280); the SAN carries the full name.
ALPN = ["http/1.1"]


def _serial() -> int:
    # 159 random bits: positive and within RFC 5280's 20 octets; never zero.
    return secrets.randbits(159) | 1


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:MAX_CN])])


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """The gateway's own CA: a P-256 key and its self-signed certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    @classmethod
    def generate(cls, common_name: str = "Gig'MCP egress CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            # path_length=0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """The CA back from its PEMs; ValueError unless the key is the certificate's own
        and the certificate is a CA allowed to sign certificates."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ValueError("the CA certificate is not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            # TypeError: the key is encrypted. The message stays generic on purpose:
            # nothing about the key's bytes belongs in an exception that may be logged.
            raise ValueError("the CA key is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise ValueError("the CA key does not match the CA certificate")
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            basic = None
        if basic is None or not basic.ca:
            raise ValueError("the certificate is not a CA certificate")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None  # no KeyUsage means no restriction (RFC 5280 4.2.1.3)
        if usage is not None and not usage.key_cert_sign:
            raise ValueError("the CA certificate may not sign certificates (no keyCertSign)")
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        """Public: it goes into every sandbox's CA bundle."""
        return self._cert_pem

    def key_pem(self) -> bytes:
        """PKCS#8, unencrypted: the caller must seal it in the vault at once and never
        write it anywhere else."""
        return _pkcs8(self._key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER, lowercase hex."""
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def mint_leaf(self, host: str, *, is_ip: bool) -> tuple[bytes, bytes]:
        """(leaf + CA chain PEM, leaf key PEM) for ``host``, a canonical DNS name (A-labels)
        or, with ``is_ip``, an IP address."""
        if not host or "*" in host:
            # A wildcard leaf would speak for every host under it; an empty one for none.
            raise ValueError("a leaf is minted for exactly one host, never a wildcard")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        san: x509.GeneralName = (
            x509.IPAddress(ipaddress.ip_address(host)) if is_ip else x509.DNSName(host)
        )
        leaf = (
            x509.CertificateBuilder()
            # No CN for an IP: clients match the SAN only, and an IP in a CN invites
            # legacy CN matching. With an empty subject the SAN must be critical (RFC
            # 5280 4.2.1.6).
            .subject_name(x509.Name([]) if is_ip else _name(host))
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
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        return leaf.public_bytes(serialization.Encoding.PEM) + self._cert_pem, _pkcs8(key)

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority({self.cert.subject.rfc4514_string()}, {self.fingerprint[:16]})"
        )


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server-side context for one leaf, offering HTTP/1.1 only.

    ``load_cert_chain`` accepts only paths, so the PEMs go into an anonymous memfd
    (RAM-backed, no name in any filesystem, not inherited across exec) that OpenSSL
    reads through ``/proc/self/fd`` and that is closed, and so freed, right after.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Only HTTP/1.1: the proxy parses and scrubs HTTP/1.1; a client offering h2 alone
    # gets no ALPN answer and must speak HTTP/1.1 or go away.
    ctx.set_alpn_protocols(ALPN)
    fd = os.memfd_create("gigmcp-leaf", os.MFD_CLOEXEC)
    try:
        data = memoryview(chain_pem + key_pem)
        while data:
            data = data[os.write(fd, data) :]
        path = f"/proc/self/fd/{fd}"
        ctx.load_cert_chain(path, path)
    finally:
        os.close(fd)
    return ctx


@dataclass(frozen=True, slots=True)
class _Entry:
    minted_at: float  # the cache's (monotonic) clock
    not_before: float  # wall clock, from the leaf itself
    not_after: float
    context: ssl.SSLContext


class LeafCache:
    """Server contexts per host: LRU- and time-bound, one mint per host at a time."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        max_entries: int = 1024,
        ttl_s: float = 12 * 3600,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S:.0f}]: half a leaf's life")
        self.ca = ca
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: OrderedDict[tuple[str, bool], _Entry] = OrderedDict()
        self._inflight: dict[tuple[str, bool], asyncio.Task[ssl.SSLContext]] = {}
        self.mints = 0

    def __len__(self) -> int:
        return len(self._cache)

    def _fresh(self, entry: _Entry) -> bool:
        wall = self._wall_clock()
        return (
            self._clock() - entry.minted_at < self.ttl_s
            and entry.not_before <= wall < entry.not_after - EXPIRY_MARGIN_S
        )

    async def context_for(self, host: str, *, is_ip: bool = False) -> ssl.SSLContext:
        key = (host, is_ip)
        entry = self._cache.get(key)
        if entry is not None and self._fresh(entry):
            self._cache.move_to_end(key)
            return entry.context
        task = self._inflight.get(key)
        if task is None:
            # The mint is a task of its own, not the first caller's: if that caller is
            # cancelled (its client hung up), the others still get their context.
            task = asyncio.get_running_loop().create_task(self._mint(key))
            task.add_done_callback(lambda t: self._settled(key, t))
            self._inflight[key] = task
        # shield: one waiter giving up must not cancel the mint the others wait for.
        return await asyncio.shield(task)

    def _settled(self, key: tuple[str, bool], task: asyncio.Task[ssl.SSLContext]) -> None:
        # Success or failure, the next caller starts afresh: a failed mint is retried.
        # A done callback rather than a ``finally`` in _mint: it runs even for a task
        # cancelled before it started (at loop shutdown), so no dead task stays in flight.
        # It runs before the waiters resume, callbacks being called in the order added.
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            # Every waiter has the exception already; if none was left (all cancelled),
            # this keeps asyncio from logging "exception was never retrieved".
            task.exception()

    async def _mint(self, key: tuple[str, bool]) -> ssl.SSLContext:
        entry = await asyncio.to_thread(self._mint_blocking, *key)
        self.mints += 1
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return entry.context

    def _mint_blocking(self, host: str, is_ip: bool) -> _Entry:
        chain, key = self.ca.mint_leaf(host, is_ip=is_ip)
        leaf = x509.load_pem_x509_certificate(chain)
        return _Entry(
            minted_at=self._clock(),
            not_before=leaf.not_valid_before_utc.timestamp(),
            not_after=leaf.not_valid_after_utc.timestamp(),
            context=server_context(chain, key),
        )


def upstream_context(extra_ca_pem: bytes | None = None) -> ssl.SSLContext:
    """The proxy's client context toward upstreams: the system trust store (plus
    ``extra_ca_pem``, a PEM bundle, if given), CERT_REQUIRED, hostname checked."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    if extra_ca_pem is not None:
        # cadata must be a str (bytes would mean DER) of ASCII only. Bundles carry
        # UTF-8 in comments (``# Issuer: CN=Türk...``); non-ASCII bytes are dropped,
        # which loses nothing, as base64 inside a PEM block is ASCII anyway.
        cadata = extra_ca_pem.decode("ascii", "ignore")
        # Counted in an empty scratch store: in ``ctx`` a certificate the system store
        # already holds adds nothing, and a bundle of such is still a valid bundle.
        scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            scratch.load_verify_locations(cadata=cadata)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"the extra CA bundle is not PEM certificates: {exc}") from None
        # OpenSSL refuses a bundle without a certificate itself today; this check does
        # not rely on it.
        if scratch.cert_store_stats()["x509"] == 0:
            raise ValueError("the extra CA bundle holds no certificate")
        ctx.load_verify_locations(cadata=cadata)
    return ctx
