"""Which resolved addresses the proxy may dial: explicit tables, not library guesses.

Owns the verdict for one IP address. Tables are written out here, from the IANA
special-purpose registries, rather than taken from ``ipaddress.is_private``/``is_global``
(whose answers have changed between Python releases and have had security bugs). IPv4
carried inside IPv6 — mapped, compatible, translated (SIIT), NAT64, 6to4, Teredo — is
unwrapped and judged as the IPv4 address it reaches. The gateway host's own addresses
are not in any table (they are public addresses too, and they change): ``hostaddr.py``
asks the kernel about them at every dial, after these tables.

It must never call an address dialable that is loopback, private, link-local, shared
(CGNAT), multicast, reserved, documentation, benchmarking, "this network", broadcast,
unique-local, site-local, or a cloud metadata address, in any spelling.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
N4 = ipaddress.IPv4Network
N6 = ipaddress.IPv6Network

# Named first, so that the reason says what it is (they sit inside wider ranges too).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.123", "100.100.100.200",
              "192.0.0.192", "fd00:ec2::254", "fd00:ec2::23")
)  # fmt: skip

IPV4_BLOCKED: tuple[tuple[N4, str], ...] = tuple(
    (N4(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "ietf-special"),
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "ietf-special"),  # AS112
        ("192.52.193.0/24", "ietf-special"),  # AMT
        ("192.88.99.0/24", "6to4-relay"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "ietf-special"),  # AS112 direct delegation
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    )
)

# IPv6 ranges that carry an IPv4 address: how to find it.
_MAPPED = N6("::ffff:0:0/96")
_TRANSLATED = N6("::ffff:0:0:0/96")
_COMPATIBLE = N6("::/96")
_NAT64 = N6("64:ff9b::/96")
_SIX_TO_FOUR = N6("2002::/16")
_TEREDO = N6("2001::/32")
_GLOBAL_UNICAST = N6("2000::/3")

IPV6_BLOCKED: tuple[tuple[N6, str], ...] = tuple(
    (N6(net), reason)
    for net, reason in (
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("64:ff9b:1::/48", "nat64-local"),
        ("100::/64", "discard"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "ietf-special"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "reserved"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    if ip in METADATA:
        return "cloud-metadata"
    for net, reason in IPV4_BLOCKED:
        if ip in net:
            return "broadcast" if ip == ipaddress.IPv4Address("255.255.255.255") else reason
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """None if the proxy may dial ``ip``; else a short machine-readable reason."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    if ip in METADATA:
        return "cloud-metadata"
    n = int(ip)
    # IPv4 the kernel would reach through these forms is judged as itself; the proxy
    # dials IPv4 as IPv4, so a wrapped form is refused even when the address is public.
    for net in (_MAPPED, _TRANSLATED, _COMPATIBLE):
        if ip in net and ip not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
            inner = ipaddress.IPv4Address(n & 0xFFFFFFFF)
            return _v4_reason(inner) or "ipv4-embedded"
    if ip in _NAT64:
        return _v4_reason(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip in _SIX_TO_FOUR:
        return _v4_reason(ipaddress.IPv4Address((n >> 80) & 0xFFFFFFFF))
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((n >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address((n & 0xFFFFFFFF) ^ 0xFFFFFFFF)
        return _v4_reason(server) or _v4_reason(client) or "ietf-special"
    for net6, reason in IPV6_BLOCKED:
        if ip in net6:
            return reason
    if ip not in _GLOBAL_UNICAST:
        return "reserved"
    return None


def dialable(ip: IPAddress) -> bool:
    return blocked_reason(ip) is None


def filter_answers(
    addresses: Iterable[IPAddress],
) -> tuple[list[IPAddress], list[tuple[IPAddress, str]]]:
    """The dialable addresses, in order, and the refused ones with their reasons."""
    ok: list[IPAddress] = []
    refused: list[tuple[IPAddress, str]] = []
    for ip in addresses:
        reason = blocked_reason(ip)
        if reason is None:
            if ip not in ok:
                ok.append(ip)
        else:
            refused.append((ip, reason))
    return ok, refused
