"""Fetching the signed registry index: verify before parsing, refuse rollbacks, notice
a frozen registry, keep the last good copy for when the registry is unreachable.

The index and its detached signature (``<url>.sig``, hex ed25519 over the exact bytes)
come from ``GIG_REGISTRY_INDEX_URL`` (``https://`` or ``file://``). Both downloads are
size-capped and time-limited; the signature is checked against ``GIG_REGISTRY_PUBKEY``
over the raw bytes before a single byte is parsed. An index whose ``generated`` time is
older than the last one accepted is a rollback (an attacker replaying an old index
with a since-revoked server) and is refused; one with the same time but other bytes
too. An index older than ``max_age`` means the registry (or a mirror) has stopped
updating — a freeze attack hides revocations — and is a warning or a refusal, as
configured. A registry that cannot be reached falls back to the last accepted copy on
disk, re-verified, with a warning; a registry that answers with something that fails
verification does not: that is an attack, and it is said so.

Owns the transport, the caps and these decisions. It must never parse an unverified
byte, follow a redirect to anything but https, or accept an index older than one it
already accepted.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

from gigmcp.registry.errors import RegistryError as SchemaError
from gigmcp.registry.errors import SignatureError
from gigmcp.registry.index import Index, parse_index
from gigmcp.registry.signing import verify

MAX_INDEX_BYTES = 32 * 1024 * 1024
MAX_SIG_BYTES = 1024
TIMEOUT_S = 30.0
MAX_REDIRECTS = 3


class IndexFetchError(Exception):
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
    # TLS trust for https:// (an SSLContext for a private CA); True: the system's.
    verify: ssl.SSLContext | bool = True


async def fetch_index(
    source: RegistrySource,
    last: Accepted | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Fetched:
    """Fetch, verify, parse and check ``source``'s index against ``last``. The caller
    stores ``Accepted(result.generated, result.sha256)`` once it uses the result."""
    try:
        raw = await _get(source.url, source.max_bytes, source.timeout, source.verify)
        sig = await _get(_sig_url(source.url), MAX_SIG_BYTES, source.timeout, source.verify)
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
    except SchemaError as exc:
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


async def _get(url: str, cap: int, timeout: float, verify: ssl.SSLContext | bool) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return _read_file(urllib.parse.unquote(parts.path), cap)
    if parts.scheme != "https":
        raise IndexFetchError(f"registry URL must be https:// or file://, not {parts.scheme}://")
    try:
        async with httpx2.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=verify, trust_env=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                async with client.stream("GET", url) as response:
                    if response.is_redirect:
                        target = urllib.parse.urljoin(url, response.headers.get("location", ""))
                        if urllib.parse.urlsplit(target).scheme != "https":
                            raise IndexFetchError(
                                f"{_shown(url)} redirects to a non-https URL: refused"
                            )
                        url = target
                        continue
                    if response.status_code != 200:
                        raise Unreachable(f"{_shown(url)} answered HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > cap:
                            raise IndexFetchError(f"{_shown(url)} is larger than {cap} bytes")
                    return bytes(body)
            raise IndexFetchError(f"{_shown(url)}: more than {MAX_REDIRECTS} redirects")
    except httpx2.HTTPError as exc:
        raise Unreachable(f"cannot fetch {_shown(url)}: {type(exc).__name__}") from exc


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
