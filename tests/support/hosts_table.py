"""A resolver answering from a fixed table, as /etc/hosts would (the Resolver protocol
of gigmcp.netpolicy.resolver): the SSRF guard's real checks run on its answers, and no
name is ever sent to a DNS server. Owns nothing else; it must never resolve a name
outside its table."""

from __future__ import annotations

import ipaddress

from gigmcp.netpolicy.hostaddr import HostAddresses
from gigmcp.netpolicy.resolver import AddressResolveError


class HostsTable:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []
        self.host_addresses = HostAddresses()

    async def lookup(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        self.asked.append(name)
        if name not in self.table:
            raise AddressResolveError("dns-failure", f"cannot resolve {name}: no such name")
        return [ipaddress.ip_address(a) for a in self.table[name]]
