"""Rate limits of the control plane: sign-in attempts per client address, API calls per
client address and per user. A flood gets 429 with Retry-After; the MCP endpoints never
pass through here, so they never slow down for it.

Owns token buckets kept in memory, bounded in number (the least recently used go first,
so a flood of addresses cannot grow the table), and which address a request comes from:
the peer's, or, only when the peer is a configured trusted proxy, the last address in
``X-Forwarded-For`` that is not itself a trusted proxy. Per process: each replica limits
what reaches it. It must never trust ``X-Forwarded-For`` from anyone else.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

MAX_BUCKETS = 50_000


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float


# Failed sign-in attempts per address (a wrong or spent link, a refused callback).
SIGN_IN = Rate(per_second=0.5, burst=20)
API_PER_ADDRESS = Rate(per_second=50, burst=200)
API_PER_USER = Rate(per_second=30, burst=120)


class Buckets:
    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token if there is one; whether there was."""
        return self._use(key, 1.0, now)

    def has(self, key: str, now: float | None = None) -> bool:
        """Whether a token is there, taking none (for what counts only when it fails)."""
        return self._use(key, 0.0, now)

    def _use(self, key: str, cost: float, now: float | None) -> bool:
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.rate.burst, t))
            tokens = min(self.rate.burst, tokens + (t - last) * self.rate.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= cost
            self._buckets[key] = (tokens, t)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return allowed


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(items: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(x, strict=False) for x in items)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address a request comes from, trusting X-Forwarded-For only from a trusted
    proxy, and only up to the first hop that is not one."""
    if peer is None:
        return "unknown"
    if not trusted or not _trusted(peer, trusted) or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)
