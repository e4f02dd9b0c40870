"""A client for the OCI distribution API: manifests by digest and blobs, verified.

Owns every byte fetched from a registry: manifests are requested *by digest* and hashed
before anyone parses them; blobs are streamed to a file while being hashed and counted,
refused mid-stream as soon as they run past their descriptor's size, and verified
before the caller may use them. It also owns the anonymous token challenge and where
the client agrees to send requests.

Where requests may go (a hostile registry picks the token realm and the redirect
targets, so both are checked before any connection is made):

* The registry itself: ``https``; plain ``http`` only for a registry the operator listed
  in ``ClientOptions.plain_http_registries`` (the tests' loopback registry).
* Same host as the registry, any port: allowed with the registry's scheme. A token
  realm over plain ``http`` is allowed only when the registry itself is plain ``http``
  *on loopback* and the realm is on that same loopback host.
* Any other host (Docker Hub's auth.docker.io, a CDN behind a blob redirect): ``https``
  only, no userinfo; the name is resolved first and *every* address must be public
  (``gigmcp.netpolicy.ssrf`` tables: no loopback, private, link-local, metadata...) and
  none may be an address of this host (``gigmcp.netpolicy.hostaddr``, the kernel asked as
  the egress proxy asks it, through the resolver's ``host_addresses``), and
  the connection is pinned to the vetted address (SNI and certificate checked against
  the name) so that DNS cannot be rebound between the check and the connect. Without
  this rule a registry could make the gateway GET its cloud metadata service or an
  internal admin port, and learn the answer: the "token" it returns would be sent back
  to the registry in the next request's Authorization header.
* Nothing is ever sent to the realm but ``service`` and our own pull ``scope``; there
  are no credentials to send. The token is sent only to the registry's host, never
  across a redirect, never logged, never put in an error.

It must never parse or hand out bytes it has not verified, never follow a redirect or a
realm outside the rule above, and never decode a Content-Encoding (hashes are over the
bytes as stored; a compressed transfer could also hide a bomb).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from gigmcp.netpolicy.resolver import AddressResolveError, Resolver, SystemResolver
from gigmcp.netpolicy.ssrf import blocked_reason
from gigmcp.packages.oci.errors import OciRegistryError, VerificationError
from gigmcp.packages.oci.manifest import MANIFEST_ACCEPT, Descriptor, load_json
from gigmcp.packages.oci.reference import ImageRef, parse_digest

MiB = 1024 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_TOKEN_RESPONSE = 64 * 1024
MAX_CHALLENGE = 8 * 1024
MAX_ERROR_BODY = 4 * 1024
CHUNK = 256 * 1024
# Writes and hashing leave the event loop in batches this big.
FLUSH = 4 * MiB
# A token is a header value: visible ASCII only, so it cannot split the request.
_TOKEN = re.compile(r"[\x21-\x7e]{1,16384}")
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,63}")
USER_AGENT = "gigmcp-oci/1"

OnBytes = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    # ``host[:port]`` of registries reached over plain http; anything else is https.
    plain_http_registries: frozenset[str] = frozenset()
    verify: ssl.SSLContext | bool = True
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_redirects: int = 5
    max_manifest_bytes: int = 4 * MiB  # the distribution spec's own suggested limit
    resolver: Resolver = field(default_factory=SystemResolver)


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    digest: str
    content_type: str | None
    data: bytes  # hashed to ``digest`` already


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx2.URL  # what is dialled (an IP literal for a pinned foreign host)
    headers: dict[str, str]
    extensions: dict[str, str]
    registry_host: bool  # the token may be sent here


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """``Bearer realm="...",service="..."`` → ("bearer", {...}); None if unreadable."""
    if not header or len(header) > MAX_CHALLENGE:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(m.group(1).lower(), value)
        pos = m.end()
    return scheme.lower(), params


class RegistryClient:
    """One registry, one repository, anonymous pulls. Use as an async context manager."""

    def __init__(self, ref: ImageRef, options: ClientOptions | None = None) -> None:
        self._ref = ref
        self._opts = options or ClientOptions()
        self._plain = ref.registry in self._opts.plain_http_registries
        self._scheme = "http" if self._plain else "https"
        self._host = ref.host.strip("[]")
        self._base = f"{self._scheme}://{ref.registry}/v2/{ref.repository}"
        self._token: str | None = None
        self._timeout = httpx2.Timeout(
            self._opts.read_timeout_s, connect=self._opts.connect_timeout_s
        )
        self._http = self._client()

    def _client(self) -> httpx2.AsyncClient:
        # trust_env off: no proxy, CA bundle or netrc picked up from the environment;
        # redirects are followed by hand, under the rule in the module docstring.
        return httpx2.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            verify=self._opts.verify,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def registry(self) -> str:
        return self._ref.registry

    async def manifest(self, digest: str, *, expected_size: int | None = None) -> FetchedManifest:
        """The manifest or index stored under ``digest``, hashed and checked against it."""
        digest = parse_digest(digest)
        what = f"manifest {digest}"
        cap = self._opts.max_manifest_bytes
        if expected_size is not None and expected_size > cap:
            raise VerificationError(f"{what} is {expected_size} bytes, over the {cap}-byte cap")
        limit = cap if expected_size is None else expected_size
        async with self._open(f"{self._base}/manifests/{digest}", what, MANIFEST_ACCEPT) as resp:
            if resp.status_code != 200:
                raise await self._status_error(resp, what)
            body = bytearray()
            async for chunk in resp.aiter_raw(CHUNK):
                body += chunk
                if len(body) > limit:
                    raise VerificationError(
                        f"{what} is larger than "
                        + ("its descriptor says" if expected_size is not None else "the cap")
                        + f" ({limit} bytes): refused"
                    )
            content_type = resp.headers.get("content-type")
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != digest:
            raise VerificationError(
                f"{what}: the registry's bytes do not match the pinned digest (they hash to {got})"
            )
        if expected_size is not None and len(body) != expected_size:
            raise VerificationError(
                f"{what} is {len(body)} bytes; its descriptor says {expected_size}"
            )
        return FetchedManifest(digest, content_type, bytes(body))

    async def blob(
        self, desc: Descriptor, dest: Path, *, cap: int, on_bytes: OnBytes | None = None
    ) -> None:
        """Stream the blob into ``dest`` (created, must not exist), verified on return;
        on any failure ``dest`` is removed."""
        what = f"blob {desc.digest}"
        if desc.size > cap:
            raise VerificationError(f"{what} is {desc.size} bytes, over the {cap}-byte cap")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(dest, flags, 0o600)
        try:
            try:
                count, got = await self._stream_blob(desc, fd, what, on_bytes)
            finally:
                os.close(fd)
            if count != desc.size:
                raise VerificationError(
                    f"{what} ended after {count} bytes; its descriptor says {desc.size}"
                )
            if got != desc.digest:
                raise VerificationError(
                    f"{what}: the registry's bytes do not match the digest (they hash to {got})"
                )
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            raise

    async def _stream_blob(
        self, desc: Descriptor, fd: int, what: str, on_bytes: OnBytes | None
    ) -> tuple[int, str]:
        hasher = hashlib.sha256()
        count = 0
        async with self._open(f"{self._base}/blobs/{desc.digest}", what, None) as resp:
            if resp.status_code != 200:
                raise await self._status_error(resp, what)
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > desc.size:
                raise VerificationError(
                    f"{what} is {declared} bytes by the registry's account, larger than its "
                    f"descriptor says ({desc.size} bytes): refused"
                )
            pending = bytearray()
            async for chunk in resp.aiter_raw(CHUNK):
                count += len(chunk)
                if count > desc.size:
                    raise VerificationError(
                        f"{what} is larger than its descriptor says ({desc.size} bytes): "
                        "refused mid-stream"
                    )
                pending += chunk
                if len(pending) >= FLUSH:
                    await asyncio.to_thread(_write_and_hash, fd, hasher, bytes(pending))
                    pending.clear()
                if on_bytes is not None:
                    on_bytes(len(chunk))
            if pending:
                await asyncio.to_thread(_write_and_hash, fd, hasher, bytes(pending))
        return count, "sha256:" + hasher.hexdigest()

    @contextlib.asynccontextmanager
    async def _open(
        self, url: str, what: str, accept: str | None
    ) -> AsyncIterator[httpx2.Response]:
        """GET ``url`` (streamed): the token challenge answered once, redirects followed
        under the rule; the response is closed when the block ends."""
        current = httpx2.URL(url)
        hops = 0
        authenticated = False
        async with contextlib.AsyncExitStack() as stack:
            while True:
                target = await self._vet(current, purpose="redirect" if hops else "registry")
                headers = dict(target.headers)
                if accept:
                    headers["Accept"] = accept
                if target.registry_host and self._token is not None:
                    headers["Authorization"] = f"Bearer {self._token}"
                client = self._http
                if not target.registry_host:
                    # A fresh client per foreign host: a pooled connection verified for one
                    # name must never carry a request for another at the same address.
                    client = await stack.enter_async_context(self._client())
                request = client.build_request(
                    "GET", target.url, headers=headers, extensions=target.extensions
                )
                response = await self._send(client, request, what, target)
                if response.status_code == 401 and target.registry_host and not authenticated:
                    challenge = response.headers.get("www-authenticate", "")
                    await response.aclose()
                    await self._authenticate(challenge, what)
                    authenticated = True
                    continue
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    await response.aclose()
                    hops += 1
                    if hops > self._opts.max_redirects:
                        raise OciRegistryError(
                            f"{what}: too many redirects (more than {self._opts.max_redirects})"
                        )
                    if not location:
                        raise OciRegistryError(f"{what}: a redirect without a Location")
                    try:
                        current = current.join(location)
                    except httpx2.InvalidURL:
                        raise OciRegistryError(f"{what}: a redirect to an invalid URL") from None
                    continue
                try:
                    yield response
                except httpx2.TimeoutException:
                    raise OciRegistryError(f"{what}: timed out while receiving it") from None
                except (httpx2.HTTPError, httpx2.StreamError) as exc:
                    raise OciRegistryError(
                        f"{what}: the transfer broke off ({type(exc).__name__})"
                    ) from None
                finally:
                    await response.aclose()
                return

    async def _send(
        self, client: httpx2.AsyncClient, request: httpx2.Request, what: str, target: _Target
    ) -> httpx2.Response:
        host = target.headers.get("Host") or target.url.host
        try:
            return await client.send(request, stream=True)
        except httpx2.TimeoutException:
            raise OciRegistryError(f"{what}: timed out talking to {host}") from None
        except httpx2.HTTPError as exc:
            scheme = target.url.scheme
            raise OciRegistryError(
                f"{what}: cannot reach {host} over {scheme} ({type(exc).__name__})"
            ) from None

    async def _vet(self, url: httpx2.URL, *, purpose: str) -> _Target:
        """Apply the where-requests-may-go rule (module docstring) to ``url``."""
        if url.scheme not in ("http", "https"):
            raise OciRegistryError(f"refused {purpose} URL: scheme {url.scheme!r} is not https")
        if url.userinfo:
            raise OciRegistryError(f"refused {purpose} URL: it carries credentials")
        host = url.host
        if host == self._host:
            ok = url.scheme == "https" or (url.scheme == "http" and self._plain)
            if purpose == "realm" and url.scheme == "http":
                ok = self._plain and is_loopback_host(self._host)
            if not ok:
                where = " on loopback" if purpose == "realm" else ""
                raise OciRegistryError(
                    f"refused {purpose} URL on {host}: plain http is allowed only for a "
                    f"registry configured as plain http{where}"
                )
            return _Target(url, {}, {}, registry_host=True)
        if url.scheme != "https":
            raise OciRegistryError(f"refused {purpose} URL to {host}: another host must use https")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        hosts = self._opts.resolver.host_addresses
        if literal is not None:
            reason = blocked_reason(literal)
            if reason is not None:
                raise OciRegistryError(f"refused {purpose} URL to {host}: a {reason} address")
            # A public address can still be this host's own: its services listen there.
            reason = hosts.reason(literal)
            if reason is not None:
                raise OciRegistryError(
                    f"refused {purpose} URL to {host}: an address of this host ({reason})"
                )
            return _Target(url, {}, {}, registry_host=False)
        try:
            found = await self._opts.resolver.lookup(host)
        except AddressResolveError as exc:
            raise OciRegistryError(f"refused {purpose} URL: {exc}") from None
        reasons = sorted(
            {r for ip in found if (r := blocked_reason(ip) or hosts.reason(ip)) is not None}
        )
        if not found or reasons:
            raise OciRegistryError(
                f"refused {purpose} URL to {host}: it resolves to a blocked address "
                f"({', '.join(reasons) or 'none'})"
            )
        pinned = url.copy_with(host=str(found[0]))
        return _Target(pinned, {"Host": url.netloc.decode("ascii")}, {"sni_hostname": host}, False)

    async def _authenticate(self, challenge: str, what: str) -> None:
        parsed = parse_challenge(challenge)
        if parsed is None:
            raise OciRegistryError(f"{what}: the registry answered 401 without a usable challenge")
        scheme, params = parsed
        if scheme == "basic":
            raise OciRegistryError(
                f"{what}: the registry asks for a username and password; only anonymous "
                "pulls are supported"
            )
        if scheme != "bearer" or not params.get("realm"):
            raise OciRegistryError(f"{what}: the registry answered 401 without a bearer realm")
        try:
            realm = httpx2.URL(params["realm"])
        except httpx2.InvalidURL:
            raise OciRegistryError(f"{what}: the token realm is not a valid URL") from None
        if realm.scheme and realm.scheme not in ("http", "https"):
            raise OciRegistryError(f"refused realm URL: scheme {realm.scheme!r} is not https")
        if not realm.is_absolute_url or realm.fragment:
            raise OciRegistryError(f"{what}: the token realm is not an absolute URL")
        query: dict[str, str] = {"scope": f"repository:{self._ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        target = await self._vet(realm.copy_merge_params(query), purpose="realm")
        client = self._http if target.registry_host else self._client()
        try:
            request = client.build_request(
                "GET", target.url, headers=target.headers, extensions=target.extensions
            )
            response = await self._send(client, request, "token request", target)
            try:
                if response.status_code != 200:
                    raise OciRegistryError(
                        f"{what}: the token service answered {response.status_code}"
                    )
                body = bytearray()
                async for chunk in response.aiter_raw(CHUNK):
                    body += chunk
                    if len(body) > MAX_TOKEN_RESPONSE:
                        raise OciRegistryError(f"{what}: the token service's answer is too large")
            finally:
                await response.aclose()
        finally:
            if client is not self._http:
                await client.aclose()
        doc = load_json(bytes(body), "the token service's answer")
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise OciRegistryError(f"{what}: the token service's answer has no usable token")
        self._token = token

    async def _status_error(self, response: httpx2.Response, what: str) -> OciRegistryError:
        """An error naming the status and, when the registry sent one, its error code
        (``MANIFEST_UNKNOWN``); the body itself is never quoted."""
        code = ""
        body = bytearray()
        with contextlib.suppress(httpx2.HTTPError):
            async for chunk in response.aiter_raw(CHUNK):
                body += chunk
                if len(body) > MAX_ERROR_BODY:
                    break
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            first = json.loads(bytes(body))["errors"][0]["code"]
            if isinstance(first, str) and _ERROR_CODE.fullmatch(first):
                code = f" {first}"
        status = response.status_code
        hint = ""
        if status == 401:
            hint = " (the registry refused anonymous access)"
        elif status == 404:
            hint = f" (not in {self._ref.registry}/{self._ref.repository})"
        return OciRegistryError(f"{what}: the registry answered {status}{code}{hint}")


def _write_and_hash(fd: int, hasher: hashlib._Hash, data: bytes) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
