"""May this instance go to host:port? The allowlist and the port policy of one server.

Owns matching a canonical :class:`Host` against a server's egress entries (exact host,
or ``*.suffix`` matching exactly one label more, as the registry's rules define) and
its ports, and the operator's rule over ports (:class:`PortRules`): 443 is the default;
80 (plain HTTP) only when a server's definition lists it, and never with a credential
(the proxy injects only on legs verified by TLS); any other port only when the operator
lists it in ``GIG_EGRESS_EXTRA_PORTS`` — checked when a grant is written and again here,
on every connection, so a grant written earlier or a setting withdrawn since still
cannot open one. Decided before any DNS or TLS work. It must never allow an IP literal
(allowlists hold names only), and an empty allowlist allows nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gigmcp.errors import Invalid
from gigmcp.netpolicy.hosts import Host, HostError, canonical_pattern

HTTPS_PORT = 443
PLAIN_HTTP_PORT = 80
# What a server gets when its definition names no port: HTTPS only. Port 80 carries
# requests anyone on the path can read or answer, so it is never a default.
DEFAULT_PORTS: tuple[int, ...] = (HTTPS_PORT,)
# What a definition may list without the operator: HTTPS, and plain HTTP for requests
# that carry no credential.
BASE_PORTS = frozenset({HTTPS_PORT, PLAIN_HTTP_PORT})
EXTRA_PORTS_SETTING = "GIG_EGRESS_EXTRA_PORTS"


class PortNotPermitted(Invalid):
    """A grant names a port the operator has not allowed; the message says how to."""


@dataclass(frozen=True, slots=True, init=False)
class PortRules:
    """The operator's rule over egress ports: 443 and 80, plus ``extra``. The proxy's
    listeners and the sandbox walls do not depend on it (a sandbox reaches only the
    proxy); it decides which upstream ports the proxy may dial for anyone."""

    extra: frozenset[int]

    def __init__(self, extra: Iterable[int] = ()) -> None:
        ports = frozenset(extra)
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise HostError(f"port {p!r:.20} is not 1-65535")
        object.__setattr__(self, "extra", ports)

    def permits(self, port: int) -> bool:
        return port in BASE_PORTS or port in self.extra

    def check(self, ports: Iterable[int]) -> None:
        """Raise :class:`PortNotPermitted` naming the first port not permitted."""
        for port in ports:
            if not self.permits(port):
                raise PortNotPermitted(
                    f"egress port {port} is not allowed on this gateway: servers may use 443 "
                    f"(and 80 for plain HTTP without credentials); the operator can allow "
                    f"{port} by listing it in {EXTRA_PORTS_SETTING}"
                )

    def describe(self, port: int) -> str:
        """One line of consent text for a granted port."""
        if port == HTTPS_PORT:
            return f"port {port} (HTTPS, upstream verified by TLS): credentials are sent here"
        if port == PLAIN_HTTP_PORT:
            return f"port {port} (plain HTTP): no credential is ever sent on it"
        return (
            f"port {port} (allowed by this gateway's operator in {EXTRA_PORTS_SETTING}): "
            "a credential only over HTTPS verified by TLS, never over plain HTTP"
        )


NO_EXTRA_PORTS = PortRules()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # allowed | no-allowlist | ip-literal | host-not-allowed | port-not-allowed (not in
    # the server's grant) | port-not-permitted (in the grant, not allowed by the operator)
    reason: str


class EgressPolicy:
    def __init__(
        self,
        hosts: Iterable[str],
        ports: Iterable[int] = DEFAULT_PORTS,
        rules: PortRules = NO_EXTRA_PORTS,
    ) -> None:
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
        self.rules = rules

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
        if not self.rules.permits(port):
            return Decision(False, "port-not-permitted")
        return Decision(True, "allowed")

    def __repr__(self) -> str:
        hosts = sorted(self._exact) + [f"*.{s}" for s in sorted(self._suffixes)]
        return f"EgressPolicy({hosts}, ports={sorted(self.ports)})"
