"""Requests from the gateway itself to an authorization server: discovery documents,
token and revocation endpoints. Every one goes through the SSRF guard.

Where a request may go:

* A URL whose host is a loopback literal (``127.0.0.1``, ``::1``, ``localhost``) that the
  operator typed (an issuer or an endpoint of an app), or one on that very origin: the
  operator's own machine, which is what the tests use. Plain http only here.
* Anything else: ``https`` only, no userinfo; the name resolved by the egress resolver
  and *every* answer vetted (``netpolicy/resolver.resolve_vetted``: no private, loopback,
  link-local, metadata or host address), and the connection pinned to the vetted
  address (SNI and certificate checked against the name), so that DNS cannot be rebound
  between the check and the connect. A discovered endpoint (from a metadata document)
  on a loopback literal of another origin is refused like any private address.

Redirects are never followed (an authorization server that redirects a token request is
broken or hostile); answers are capped in size and time.

Owns these decisions and the transport. It must never dial an unvetted address, send a
request to a plain-http origin other than a loopback one the operator named, or put a
form field (a code, a token, a secret) into an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2

from gigmcp.errors import EgressError
from gigmcp.netpolicy.hosts import HostError, canonical_host
from gigmcp.netpolicy.resolver import AddressResolveError, Resolver, SystemResolver, resolve_vetted

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 1024 * 1024


class OutboundRefused(EgressError):
    """A URL the guard refuses; the message names the origin, never a query."""


class OutboundFailed(EgressError):
    """The server could not be reached, or its answer not read (transient)."""


def origin_of(url: str) -> str:
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{u.scheme}://{(u.hostname or '').lower()}:{port}"


def shown(url: str) -> str:
    """A URL as errors show it: scheme, host, port and path, never a query or userinfo."""
    u = urlsplit(url)
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{u.scheme}://{host}{f':{u.port}' if u.port else ''}{u.path}"


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_operator_url(url: str, what: str) -> str:
    """An URL an administrator typed: https, or any scheme of http(s) on a loopback
    literal; no userinfo, no fragment. Returns it unchanged, or raises OutboundRefused."""
    try:
        u = urlsplit(url)
        u.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise OutboundRefused(f"{what}: not a URL") from None
    if u.scheme not in ("https", "http") or not u.hostname:
        raise OutboundRefused(f"{what}: an https:// URL is needed")
    try:
        # A host name or an address, nothing else: the URL's origin ends up in places
        # (a page's Content-Security-Policy) where other characters would mean more.
        canonical_host(u.hostname)
    except HostError as exc:
        raise OutboundRefused(f"{what}: {exc}") from None
    if u.username is not None or u.password is not None:
        raise OutboundRefused(f"{what}: a URL with a user name or password in it")
    if u.fragment:
        raise OutboundRefused(f"{what}: a URL with a fragment")
    if u.scheme == "http" and not is_loopback_host(u.hostname):
        raise OutboundRefused(f"{what}: plain http is allowed only on loopback (for tests)")
    return url


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Outbound:
    """The guarded transport. ``trusted``: origins an administrator named (their loopback
    URLs are dialled as they are); ``verify``: TLS trust (True: the system's store)."""

    resolver: Resolver = field(default_factory=SystemResolver)
    verify: ssl.SSLContext | bool = True
    timeout: float = TIMEOUT_S
    max_bytes: int = MAX_ANSWER_BYTES

    async def request(
        self,
        method: str,
        url: str,
        *,
        trusted: Iterable[str] = (),
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        target, extra, ext = await self._vet(url, frozenset(trusted))
        try:
            async with asyncio.timeout(self.timeout):
                async with httpx2.AsyncClient(
                    timeout=self.timeout, follow_redirects=False, verify=self.verify,
                    trust_env=False,
                ) as client:  # fmt: skip
                    # Identity: the size cap counts what the server sent, not what a
                    # compressed answer would inflate to.
                    sent = {"Accept-Encoding": "identity", **(headers or {}), **extra}
                    request = client.build_request(
                        method, target, data=data, json=json_body, headers=sent, extensions=ext
                    )
                    response = await client.send(request, stream=True)
                    try:
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_bytes:
                                raise OutboundFailed(
                                    f"{shown(url)}: an answer larger than {self.max_bytes} bytes"
                                )
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise OutboundFailed(f"{shown(url)}: no answer within {self.timeout:g} s") from None
        except httpx2.HTTPError as exc:
            raise OutboundFailed(f"{shown(url)} cannot be reached ({type(exc).__name__})") from None
        return Answer(response.status_code, dict(response.headers), bytes(body))

    async def check(self, url: str, trusted: Iterable[str] = ()) -> None:
        """Raise OutboundRefused if a request to ``url`` would be refused (resolving its
        name now): for a configuration, checked when it is saved."""
        await self._vet(url, frozenset(trusted))

    async def _vet(
        self, url: str, trusted: frozenset[str]
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        try:
            u = urlsplit(url)
            host = u.hostname or ""
            u.port  # noqa: B018
        except ValueError:
            raise OutboundRefused("not a URL") from None
        if u.username is not None or u.password is not None:
            raise OutboundRefused(f"{shown(url)}: a URL with credentials in it")
        if is_loopback_host(host):
            # Only the operator's own: a discovered document cannot send the gateway to
            # a loopback service of another origin.
            if origin_of(url) not in trusted:
                raise OutboundRefused(f"{shown(url)}: a loopback address nobody configured")
            return url, {}, {}
        if u.scheme != "https":
            raise OutboundRefused(f"{shown(url)}: not https")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            raise OutboundRefused(f"{shown(url)}: an IP address instead of a name")
        try:
            vetted = await resolve_vetted(self.resolver, host)
        except AddressResolveError as exc:
            raise OutboundRefused(f"{shown(url)}: {exc}") from None
        ip = vetted.addresses[0]
        pinned = u._replace(netloc=f"[{ip}]" if ip.version == 6 else str(ip))
        if u.port:
            pinned = pinned._replace(netloc=f"{pinned.netloc}:{u.port}")
        host_header = host + (f":{u.port}" if u.port else "")
        return pinned.geturl(), {"Host": host_header}, {"sni_hostname": host}
