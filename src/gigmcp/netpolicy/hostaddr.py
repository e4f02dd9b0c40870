"""Is this address the gateway's own host? Asked of the kernel, at the moment of dialling.

Owns one verdict: would a connection to this address be delivered to this host — an
address of any interface of the network namespace the proxy dials from (IPv4 or IPv6,
up or down), a local route (``ip route add local 203.0.113.0/24 dev lo`` makes a whole
range the host's), or a broadcast address of one of its networks — and the operator's
list of such addresses the proxy may dial anyway (``GIG_EGRESS_ALLOW_HOST_ADDRESSES``).
A public address of the host passes every special-purpose table in ``ssrf.py``, yet
reaches the host's own services (the gateway's API when it listens beyond loopback, a
container engine's socket, the kubelet).

How it stays current (chosen over a netlink watch or a periodic re-read): every verdict
is a fresh RTM_GETROUTE question to the kernel for that one address, asked from the
thread that is about to dial, so

- nothing is ever stale: an address added a millisecond ago is refused. A watch is only
  as fresh as the event loop's last wake-up, and silently stale if its socket ever
  overflows (ENOBUFS); an interval re-read leaves a window by design;
- the answer is the kernel's own routing decision, the very lookup ``connect()`` makes,
  so it covers what a list of interface addresses misses (local routes, broadcasts);
- the cost does not grow with the number of interfaces (the gateway has one veth per
  sandbox): one request and one reply per vetted address, tens of microseconds, paid
  only when a new upstream connection is dialled (a pooled connection is not re-dialled);
- there is no state, task or socket to leak, and the namespace asked is the one the
  dialling thread is in at that moment — the one ``connect()`` will use.

It must never call an address foreign when the kernel cannot be asked (that is a
refusal, ``host-check-failed``), and never let the operator's list lift anything but
this check (loopback, private and metadata addresses stay refused by ``ssrf.py``).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import struct
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NETLINK_ROUTE = 0
_RTM_NEWROUTE = 24
_RTM_GETROUTE = 26
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_RTA_DST = 1
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
# Route types (linux/rtnetlink.h) whose traffic this host takes in itself.
_RTN_LOCAL, _RTN_BROADCAST, _RTN_ANYCAST, _RTN_MULTICAST = 2, 3, 4, 5
_HOST_TYPES = {
    _RTN_LOCAL: "host-address",
    _RTN_BROADCAST: "host-broadcast",
    _RTN_ANYCAST: "host-address",
    _RTN_MULTICAST: "host-broadcast",
}
# No route at all: connect() would fail, nothing here is reached.
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES}  # unreachable, prohibit
_seq = itertools.count(1)


class HostAddresses:
    """The host's own addresses as the kernel sees them now, minus the operator's list."""

    def __init__(self, allow: Iterable[IPNetwork] = ()) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(allow)

    def reason(self, ip: IPAddress) -> str | None:
        """None if ``ip`` is not this host's (or the operator allows it); else why."""
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        try:
            kind = route_type(ip)
        except OSError:
            return "host-check-failed"
        return _HOST_TYPES.get(kind) if kind is not None else None

    def filter(
        self, addresses: Iterable[IPAddress]
    ) -> tuple[list[IPAddress], list[tuple[IPAddress, str]]]:
        """The addresses that are not the host's, in order, and the refused ones."""
        ok: list[IPAddress] = []
        refused: list[tuple[IPAddress, str]] = []
        for ip in addresses:
            why = self.reason(ip)
            if why is None:
                ok.append(ip)
            else:
                refused.append((ip, why))
        return ok, refused


def route_type(ip: IPAddress) -> int | None:
    """The kernel's route type toward ``ip`` from this thread's network namespace (an
    ``RTN_*`` number), or None when it has no route there. OSError when it cannot say."""
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    dst = ip.packed
    body = _RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0)
    body += _RTATTR.pack(_RTATTR.size + len(dst), _RTA_DST) + dst  # 4 + 4|16: aligned
    seq = next(_seq) & 0xFFFFFFFF
    request = _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, seq, 0) + body
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE
    ) as nl:
        # The kernel answers a route question synchronously; the timeout only bounds
        # the unthinkable, and fails closed.
        nl.settimeout(1.0)
        nl.send(request)
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _flags, got_seq, _pid = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    raise OSError(errno.EPROTO, "malformed netlink message")
                payload = offset + _NLMSG.size
                offset += (length + 3) & ~3
                if got_seq != seq:
                    continue
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, payload)
                    if -code in _NO_ROUTE:
                        return None
                    raise OSError(-code, f"route lookup for {ip}: {errno.errorcode.get(-code)}")
                if kind == _RTM_NEWROUTE:
                    return int(_RTMSG.unpack_from(data, payload)[7])
