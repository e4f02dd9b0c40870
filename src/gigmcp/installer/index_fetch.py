"""Fetching the signed registry index: verify before parsing, refuse rollbacks, notice
a frozen registry, keep the last good copy for when the registry is unreachable.

The index and its detached signature (``<url>.sig``, hex ed25519 over the exact bytes)
come from ``GIG_REGISTRY_INDEX_URL`` (``https://`` or ``file://``). Both downloads are
size-capped, time-limited per read and, together, by an overall deadline (a registry
that drips a byte at a time cannot hold the fetch open); the signature is checked
against ``GIG_REGISTRY_PUBKEY`` over the raw bytes before a single byte is parsed. An
index whose ``generated`` time is older than the last one accepted is a rollback (an
attacker replaying an old index with a since-revoked server) and is refused; one with
the same time but other bytes too. An index older than ``max_age`` means the registry
(or a mirror) has stopped updating — a freeze attack hides revocations — and is a
warning or a refusal, as configured. A registry that cannot be reached falls back to
the last accepted copy on disk, re-verified, with a warning; a registry that answers
with something that fails verification does not: that is an attack, and it is said so.

Where requests may go (a hostile registry or mirror picks the redirect targets; the
rule is the OCI client's, ``packages/oci/distribution.py``):

* The configured URL's host, any port: the operator named it, so it may be on a
  private network (a mirror) or on loopback (the tests' registry).
* Any other host, reached by a redirect: ``https`` only, no userinfo; the name is
  resolved first and *every* address must be public (``gigmcp.netpolicy.ssrf``: no
  loopback, private, link-local, cloud metadata...) and none may be an address of
  this host (``gigmcp.netpolicy.hostaddr``: the kernel is asked, as the egress proxy asks
  it, for the resolver's ``host_addresses``), and the connection is pinned to the
  vetted address (SNI and certificate checked against the name) so that DNS cannot be
  rebound between the check and the connect. A refused redirect is an attack, not an
  outage: it is an error, never a fall-back to the last good copy.

Owns the transport, the caps and these decisions. It must never parse an unverified
byte, follow a redirect outside the rule above, or accept an index older than one it
already accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

from gigmcp.errors import RegistryError
from gigmcp.netpolicy.resolver import AddressResolveError, Resolver, SystemResolver
from gigmcp.netpolicy.ssrf import blocked_reason
from gigmcp.registry.errors import RegistryDataError, SignatureError
from gigmcp.registry.index import Index, parse_index
from gigmcp.registry.signing import verify

MAX_INDEX_BYTES = 32 * 1024 * 1024
MAX_SIG_BYTES = 1024
TIMEOUT_S = 30.0  # per connect and per read
DEADLINE_S = 120.0  # for the index and its signature together, redirects and all
MAX_REDIRECTS = 3


class IndexFetchError(RegistryError):
    """The index could not be had, or was refused; the message says which and why."""


class Unreachable(IndexFetchError):
    pass


@dataclass(frozen=True, slots=True)
class Accepted:
    """What was accepted last: its ``generated`` time and the hash of its bytes."""

    generated: datetime
    sha256: str


@dataclass(slots=True)
class Fetched:
    index: Index
    raw: bytes
    sha256: str
    generated: datetime
    from_cache: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegistrySource:
    url: str
    pubkey: str
    cache_dir: Path
    max_age: timedelta | None = None
    refuse_stale: bool = False
    max_bytes: int = MAX_INDEX_BYTES
    timeout: float = TIMEOUT_S
    deadline: float = DEADLINE_S
    # TLS trust for https:// (an SSLContext for a private CA); True: the system's.
    verify: ssl.SSLContext | bool = True
    # Resolves a redirect's host before it is vetted and dialled.
    resolver: Resolver = field(default_factory=SystemResolver)


async def fetch_index(
    source: RegistrySource,
    last: Accepted | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Fetched:
    """Fetch, verify, parse and check ``source``'s index against ``last``. The caller
    stores ``Accepted(result.generated, result.sha256)`` once it uses the result."""
    deadline = asyncio.get_running_loop().time() + source.deadline
    try:
        raw = await _get(source, source.url, source.max_bytes, deadline)
        sig = await _get(source, _sig_url(source.url), MAX_SIG_BYTES, deadline)
    except Unreachable as exc:
        cached = _load_cache(source, last)
        if cached is None:
            if last is None:
                raise Unreachable(f"{exc}; and no index was accepted before") from exc
            raise Unreachable(
                f"{exc}; and the index accepted last is not in {source.cache_dir}"
            ) from exc
        cached.warnings.append(f"{exc}; using the last accepted index")
        _check_age(source, cached, now())
        return cached
    fetched = _accept(source, raw, sig.decode("ascii", errors="replace"), last)
    _check_age(source, fetched, now())
    _save_cache(source, raw, sig)
    return fetched


def _accept(source: RegistrySource, raw: bytes, sig: str, last: Accepted | None) -> Fetched:
    try:
        verify(source.pubkey, raw, sig)
    except SignatureError as exc:
        raise IndexFetchError(
            f"registry index from {_shown(source.url)} refused: {exc} (not signed by "
            "GIG_REGISTRY_PUBKEY: a tampered index, or the wrong key)"
        ) from exc
    try:
        index = parse_index(raw)
    except RegistryDataError as exc:
        # Signed by our key and still malformed: the registry's bug, not an attack.
        raise IndexFetchError(f"registry index from {_shown(source.url)}: {exc}") from exc
    generated = index.generated_at
    digest = hashlib.sha256(raw).hexdigest()
    if last is not None:
        if generated < last.generated:
            raise IndexFetchError(
                f"registry index refused: generated {generated.isoformat()}, older than the "
                f"one already accepted ({last.generated.isoformat()}): a rollback"
            )
        if generated == last.generated and digest != last.sha256:
            raise IndexFetchError(
                "registry index refused: same generation time as the accepted one "
                f"({generated.isoformat()}) but different content"
            )
    return Fetched(index, raw, digest, generated)


def _check_age(source: RegistrySource, fetched: Fetched, now: datetime) -> None:
    if source.max_age is None:
        return
    age = now - fetched.generated
    if age <= source.max_age:
        return
    days = age.total_seconds() / 86400
    message = (
        f"registry index is {days:.1f} days old (generated {fetched.generated.isoformat()}), "
        f"past GIG_REGISTRY_MAX_AGE: the registry may be frozen, hiding revocations"
    )
    if source.refuse_stale:
        raise IndexFetchError(message)
    fetched.warnings.append(message)


def _sig_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + ".sig"))


def _shown(url: str) -> str:
    # Never show credentials someone put in the URL.
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host, query="", fragment=""))


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx2.URL  # what is dialled (an IP literal for a pinned foreign host)
    headers: dict[str, str]
    extensions: dict[str, str]


async def _vet(source: RegistrySource, url: httpx2.URL, hop: int) -> _Target:
    """Apply the where-requests-may-go rule (module docstring) to ``url``."""
    what = f"redirect to {_shown(str(url))} refused" if hop else f"{_shown(str(url))} refused"
    if url.scheme != "https":
        raise IndexFetchError(f"{what}: not https")
    if url.userinfo:
        raise IndexFetchError(f"{what}: it carries credentials")
    if url.host == httpx2.URL(source.url).host:
        return _Target(url, {}, {})  # the operator's own registry host
    try:
        literal = ipaddress.ip_address(url.host)
    except ValueError:
        literal = None
    hosts = source.resolver.host_addresses
    if literal is not None:
        reason = blocked_reason(literal)
        if reason is not None:
            raise IndexFetchError(f"{what}: a {reason} address")
        # A public address can still be this host's own: its services listen there.
        reason = hosts.reason(literal)
        if reason is not None:
            raise IndexFetchError(f"{what}: an address of this host ({reason})")
        return _Target(url, {}, {})
    try:
        found = await source.resolver.lookup(url.host)
    except AddressResolveError as exc:
        raise IndexFetchError(f"{what}: {exc}") from None
    reasons = sorted(
        {r for ip in found if (r := blocked_reason(ip) or hosts.reason(ip)) is not None}
    )
    if not found or reasons:
        raise IndexFetchError(
            f"{what}: {url.host} resolves to a blocked address ({', '.join(reasons) or 'none'})"
        )
    pinned = url.copy_with(host=str(found[0]))
    return _Target(pinned, {"Host": url.netloc.decode("ascii")}, {"sni_hostname": url.host})


async def _get(source: RegistrySource, url: str, cap: int, deadline: float) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return _read_file(urllib.parse.unquote(parts.path), cap)
    if parts.scheme != "https":
        raise IndexFetchError(f"registry URL must be https:// or file://, not {parts.scheme}://")
    try:
        async with asyncio.timeout_at(deadline):
            return await _download(source, httpx2.URL(url), cap)
    except TimeoutError:
        raise Unreachable(
            f"{_shown(url)}: no complete answer within the {source.deadline:g} s deadline "
            "for the index and its signature (a slow or stalled registry)"
        ) from None


async def _download(source: RegistrySource, url: httpx2.URL, cap: int) -> bytes:
    shown = _shown(str(url))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for hop in range(MAX_REDIRECTS + 1):
                shown = _shown(str(url))
                target = await _vet(source, url, hop)
                # A fresh client per request: a connection verified for one name must
                # never carry a request for another at the same address.
                client = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        timeout=source.timeout,
                        follow_redirects=False,
                        verify=source.verify,
                        trust_env=False,
                    )
                )
                request = client.build_request(
                    "GET", target.url, headers=target.headers, extensions=target.extensions
                )
                response = await client.send(request, stream=True)
                stack.push_async_callback(response.aclose)
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    await response.aclose()  # its connection is not needed any more
                    try:
                        url = url.join(location)
                    except httpx2.InvalidURL:
                        raise IndexFetchError(f"{shown} redirects to an invalid URL") from None
                    if url.scheme != "https":
                        raise IndexFetchError(f"{shown} redirects to a non-https URL: refused")
                    continue
                if response.status_code != 200:
                    raise Unreachable(f"{shown} answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise IndexFetchError(f"{shown} is larger than {cap} bytes")
                return bytes(body)
            raise IndexFetchError(f"{shown}: more than {MAX_REDIRECTS} redirects")
    except httpx2.HTTPError as exc:
        raise Unreachable(f"cannot fetch {shown}: {type(exc).__name__}") from exc


def _read_file(path: str, cap: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError as exc:
        raise Unreachable(f"{path} does not exist") from exc
    except OSError as exc:
        raise Unreachable(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > cap:
        raise IndexFetchError(f"{path} is larger than {cap} bytes")
    return data


def _cache_paths(source: RegistrySource) -> tuple[Path, Path]:
    return source.cache_dir / "index.json", source.cache_dir / "index.json.sig"


def _save_cache(source: RegistrySource, raw: bytes, sig: bytes) -> None:
    source.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path, data in zip(_cache_paths(source), (raw, sig), strict=True):
        fd, tmp = tempfile.mkstemp(dir=source.cache_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


def _load_cache(source: RegistrySource, last: Accepted | None) -> Fetched | None:
    """The last accepted index, verified again (the disk is not trusted more than the
    network) and checked to be the very one accepted."""
    index_path, sig_path = _cache_paths(source)
    if last is None or not index_path.exists() or not sig_path.exists():
        return None
    raw = index_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != last.sha256:
        raise IndexFetchError(f"the cached index in {index_path} is not the one accepted")
    fetched = _accept(source, raw, sig_path.read_text(errors="replace"), None)
    fetched.from_cache = True
    return fetched
