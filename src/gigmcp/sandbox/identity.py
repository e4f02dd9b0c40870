"""Who is behind a sandbox address: the table the egress proxy asks on every connection.

Owns the map source IPv4 → :class:`Identity`. The sandbox layer writes it when an
instance's network comes up and removes the entry before the address can be reused; the
proxy only reads it. An address that is not in the table belongs to nobody: the proxy
must refuse it. It never guesses and never falls back to a default identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigmcp.core.instances import InstanceKey


@dataclass(frozen=True, slots=True)
class Identity:
    """One running jailed instance, as the proxy needs to know it."""

    key: InstanceKey
    server_name: str
    profile_id: int
    owner_id: int
    host_ip: str
    sandbox_ip: str
    host_ifname: str


class SourceTable:
    def __init__(self) -> None:
        self._by_ip: dict[str, Identity] = {}

    def add(self, identity: Identity) -> None:
        if identity.sandbox_ip in self._by_ip:
            # Two instances on one address would let one act with the other's keys.
            raise RuntimeError(f"sandbox address {identity.sandbox_ip} is already registered")
        self._by_ip[identity.sandbox_ip] = identity

    def remove(self, sandbox_ip: str) -> None:
        self._by_ip.pop(sandbox_ip, None)

    def lookup(self, source_ip: str) -> Identity | None:
        return self._by_ip.get(source_ip)

    def __len__(self) -> int:
        return len(self._by_ip)

    def snapshot(self) -> dict[str, Identity]:
        return dict(self._by_ip)
