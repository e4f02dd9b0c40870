"""Name resolution for the proxy, and the SSRF guard applied to every answer.

Owns turning a canonical host name into the addresses the proxy may dial: every answer
(A and AAAA) is checked against the address tables in ``ssrf.py``; only vetted ones are
returned, in the resolver's order; no vetted answer is a denial, never a fallback. An
answer that passes the tables is then put to the kernel (``hostaddr.py``): an address of
the gateway's own host is refused too, unless the operator listed it
(``GIG_EGRESS_ALLOW_HOST_ADDRESSES``, carried by the resolver as ``host_addresses``). The
sandbox has no resolver of its own: the proxy resolves for it, so a name that points at
the host, the metadata service or a private network is caught here, after resolution,
whatever the name looks like.

Two resolvers: the system's (``getaddrinfo``: /etc/hosts, then the host's DNS), the
default; and a DNS server named by ``GIG_EGRESS_DNS`` (dnspython), for hosts whose own
resolver should not serve the sandboxes (and for the tests, which run a DNS server in a
namespace of their own). It must never return an address it did not vet, and never
resolve an IP literal (those are refused earlier, by the allowlist).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from gigmcp.errors import EgressError
from gigmcp.netpolicy.hostaddr import HostAddresses
from gigmcp.netpolicy.ssrf import filter_answers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_S = 5.0


class AddressResolveError(EgressError):
    """No address to dial; ``reason`` is machine-readable for the audit and the 403."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Resolver(Protocol):
    # Which addresses of the host the operator lets the proxy dial (none by default).
    host_addresses: HostAddresses

    async def lookup(self, name: str) -> list[IPAddress]:
        """Every address the name has (unvetted). Raise AddressResolveError when it has none."""
        ...


class SystemResolver:
    def __init__(self, host_addresses: HostAddresses | None = None) -> None:
        self.host_addresses = host_addresses or HostAddresses()

    async def lookup(self, name: str) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, TimeoutError) as exc:
            raise AddressResolveError("dns-failure", f"cannot resolve {name}: {exc}") from None
        out: list[IPAddress] = []
        for _fam, _t, _p, _c, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0])
            if ip not in out:
                out.append(ip)
        return out


class DnsResolver:
    """Asks one DNS server (``host`` or ``host:port``) directly, A and AAAA."""

    def __init__(self, server: str, host_addresses: HostAddresses | None = None) -> None:
        self.host_addresses = host_addresses or HostAddresses()
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        # One resolver (and cache) per record type: dnspython caches NXDOMAIN for a name
        # whatever the type, so a server that says NXDOMAIN to AAAA where it has an A
        # record would otherwise make the A record vanish too.
        self._resolvers = {t: dns.asyncresolver.Resolver(configure=False) for t in ("A", "AAAA")}
        for r in self._resolvers.values():
            r.nameservers = [host]
            r.port = int(port) if port else 53
            r.lifetime = RESOLVE_TIMEOUT_S
            r.cache = dns.resolver.LRUCache(4096)

    async def lookup(self, name: str) -> list[IPAddress]:
        results = await asyncio.gather(
            self._query(name, "A"), self._query(name, "AAAA"), return_exceptions=True
        )
        out: list[IPAddress] = []
        errors: list[str] = []
        for r in results:
            if isinstance(r, BaseException):
                errors.append(str(r))
                continue
            out.extend(a for a in r if a not in out)
        if not out:
            raise AddressResolveError("dns-failure", f"cannot resolve {name}: {'; '.join(errors)}")
        return out

    async def _query(self, name: str, rdtype: str) -> list[IPAddress]:
        try:
            answer = await self._resolvers[rdtype].resolve(name, rdtype, search=False)
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as exc:
            raise AddressResolveError("dns-failure", f"{rdtype}: {type(exc).__name__}") from None
        return [ipaddress.ip_address(r.address) for r in answer]


@dataclass(frozen=True, slots=True)
class Vetted:
    addresses: tuple[IPAddress, ...]
    rejected: tuple[tuple[IPAddress, str], ...]


async def resolve_vetted(resolver: Resolver, name: str) -> Vetted:
    """The addresses of ``name`` the proxy may dial; AddressResolveError if none."""
    found = await resolver.lookup(name)
    if not found:
        raise AddressResolveError("dns-no-answer", f"{name} has no address")
    ok, rejected = filter_answers(found)
    # Right before the dial, in the dialling thread: the kernel's view as of now.
    ok, at_home = resolver.host_addresses.filter(ok)
    rejected.extend(at_home)
    if not ok:
        reasons = ", ".join(sorted({r for _ip, r in rejected}))
        raise AddressResolveError(
            "ssrf-blocked", f"{name} resolves only to blocked addresses ({reasons})"
        )
    return Vetted(tuple(ok), tuple(rejected))
