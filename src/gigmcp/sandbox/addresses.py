"""The sandbox address pool: one /30 per instance, carved out of ``GIG_SANDBOX_SUBNET``.

Owns the mapping slot → (host interface name, host address, sandbox address). Slot *n*
is the *n*-th /30 of the pool: ``.1`` is the host end (where the egress proxy listens),
``.2`` the sandbox end. It must never hand out one slot twice, and never an address
outside the pool.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from gigmcp.errors import LaunchError

# Host-side interfaces are named after their slot so that a restarted gateway can find
# (and remove) every one it made, and nothing else: Linux caps names at 15 bytes.
IFNAME_PREFIX = "gmv"


class PoolExhausted(LaunchError):
    """Every /30 of the pool is in use."""


@dataclass(frozen=True, slots=True)
class Slot:
    index: int
    host_ifname: str
    host_ip: str
    sandbox_ip: str
    prefixlen: int = 30


class AddressPool:
    """Hands out free /30s. Not thread-safe: call it from the event-loop thread."""

    def __init__(self, subnet: str) -> None:
        net = ipaddress.ip_network(subnet, strict=True)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 28:
            raise ValueError(f"sandbox subnet {subnet!r}: needs an IPv4 network of /28 or larger")
        self.network = net
        self.size = net.num_addresses // 4
        # First in, first out: a released slot is reused last, which gives the kernel
        # time to finish tearing down whatever still refers to its addresses.
        self._free: deque[int] = deque(range(self.size))
        self._used: set[int] = set()

    def slot(self, index: int) -> Slot:
        base = int(self.network.network_address) + 4 * index
        return Slot(
            index,
            f"{IFNAME_PREFIX}{index}",
            str(ipaddress.IPv4Address(base + 1)),
            str(ipaddress.IPv4Address(base + 2)),
        )

    def allocate(self) -> Slot:
        if not self._free:
            raise PoolExhausted(
                f"sandbox address pool {self.network} is exhausted ({self.size} instances "
                "running); stop idle servers or set GIG_SANDBOX_SUBNET to a larger network"
            )
        index = self._free.popleft()
        self._used.add(index)
        return self.slot(index)

    def release(self, slot: Slot) -> None:
        if slot.index in self._used:
            self._used.remove(slot.index)
            self._free.append(slot.index)

    @property
    def in_use(self) -> int:
        return len(self._used)
