"""May this instance go to host:port? The allowlist and the port policy of one server.

Owns matching a canonical :class:`Host` against a server's egress entries (exact host,
or ``*.suffix`` matching exactly one label more, as the registry's rules define) and
its ports (443 and 80 unless the manifest says otherwise). Decided before any DNS or
TLS work. It must never allow an IP literal (allowlists hold names only), and an empty
allowlist allows nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gigmcp.egress.hosts import Host, HostError, canonical_pattern

DEFAULT_PORTS = (443, 80)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # allowed | no-allowlist | ip-literal | host-not-allowed | port-not-allowed


class EgressPolicy:
    def __init__(self, hosts: Iterable[str], ports: Iterable[int] = DEFAULT_PORTS) -> None:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for entry in hosts:
            pattern = canonical_pattern(entry)
            if pattern.startswith("*."):
                suffixes.add(pattern[2:])
            else:
                exact.add(pattern)
        port_set = set()
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise HostError(f"port {p!r:.20} is not 1-65535")
            port_set.add(p)
        self._exact = frozenset(exact)
        self._suffixes = frozenset(suffixes)
        self.ports = frozenset(port_set)

    @property
    def empty(self) -> bool:
        return not self._exact and not self._suffixes

    def matches(self, host: Host) -> bool:
        if host.is_ip:
            return False
        if host.name in self._exact:
            return True
        # "*.example.com" covers "api.example.com", not "example.com" nor "a.b.example.com".
        _first, dot, parent = host.name.partition(".")
        return bool(dot) and parent in self._suffixes

    def check(self, host: Host, port: int) -> Decision:
        if self.empty:
            return Decision(False, "no-allowlist")
        if host.is_ip:
            return Decision(False, "ip-literal")
        if not self.matches(host):
            return Decision(False, "host-not-allowed")
        if port not in self.ports:
            return Decision(False, "port-not-allowed")
        return Decision(True, "allowed")

    def __repr__(self) -> str:
        hosts = sorted(self._exact) + [f"*.{s}" for s in sorted(self._suffixes)]
        return f"EgressPolicy({hosts}, ports={sorted(self.ports)})"
