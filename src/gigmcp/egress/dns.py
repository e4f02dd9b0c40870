"""The sandboxes' resolver: answers names on the server's allowlist, and nothing else.

A jail's ``/etc/resolv.conf`` names its host end, and the namespace sends every DNS query
(UDP 53, to anywhere) here. An A query for an allowlisted name gets one synthetic
address, which the namespace redirects to the proxy anyway (TCP 80/443 to anywhere meet
the proxy): the real resolution is the proxy's, behind the SSRF guard, when the
connection arrives with its SNI or Host. Any other name is NXDOMAIN, answered here:
queries are never forwarded, so DNS is no way out (no tunnelling, no exfiltration in
query names).

A jail can send far more queries than anyone needs, and the resolver runs on the
gateway's event loop, so the work a jail can cause is bounded three ways: at most
``MAX_PER_WAKEUP`` datagrams are read per readiness callback (then the loop serves
everyone else), at most ``MAX_PER_SECOND`` in all each second (past it the socket is
left alone and the kernel drops what overflows its buffer), and each instance has a token
bucket (``RATE_PER_S``, ``BURST``): its excess is dropped unparsed and only counted.
Refused and dropped queries are audited as one row per instance, reason and
``AGGREGATE_S`` interval, with a count and a few sample names, never one row per query.

Owns parsing queries (dnspython) and answering them. It must never forward a query,
answer a name off the allowlist, or answer a source address that belongs to no instance;
never let one jail's queries take the event loop from everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from gigmcp.core.instances import InstanceKey
from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.netpolicy.hosts import HostError, canonical_host
from gigmcp.netpolicy.policy import EgressPolicy
from gigmcp.sandbox.identity import Identity, SourceTable

log = logging.getLogger(__name__)
# TEST-NET-1: never a real host; the namespace redirects 80/443 to it to the proxy.
SYNTHETIC_ADDRESS = "192.0.2.1"
TTL = 60
# <linux/in.h>; Python 3.11's socket module does not export it.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
# Datagrams read per readiness callback: the loop runs every other ready callback in
# between, so a flood delays the others by at most this many datagrams' work.
MAX_PER_WAKEUP = 64
# Datagrams read per second from all jails together; past it the reader pauses until the
# second is over and the kernel drops what overflows the socket's buffer, at no cost to us.
MAX_PER_SECOND = 20_000
# Per instance: queries answered per second, sustained, and in a burst. A real client
# asks a handful of names (A and AAAA each); the excess is dropped unparsed and counted.
RATE_PER_S = 100.0
BURST = 200.0
# Refused and rate-limited queries: one audit row per instance and reason this often.
AGGREGATE_S = 5.0
SAMPLE_NAMES = 3
DENIED = "dns-not-allowed"
RATE_LIMITED = "dns-rate-limited"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _Tally:
    identity: Identity
    source: str
    count: int = 0
    samples: list[str] = field(default_factory=list)


class SandboxDns:
    """Answers queries; :func:`serve_dns` feeds it datagrams."""

    def __init__(
        self,
        identities: SourceTable,
        policy_for: Callable[[InstanceKey], EgressPolicy],
        audit: EgressAudit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identities = identities
        self.policy_for = policy_for
        self.audit = audit
        self.clock = clock
        self.answered = 0
        self.refused = 0
        self.rate_limited = 0
        self._buckets: dict[InstanceKey, _Bucket] = {}
        self._tallies: dict[tuple[InstanceKey, str], _Tally] = {}

    def _admit(self, identity: Identity) -> bool:
        """Take a token from the instance's bucket; False when it has none left."""
        now = self.clock()
        bucket = self._buckets.get(identity.key)
        if bucket is None:
            bucket = self._buckets[identity.key] = _Bucket(BURST, now)
        bucket.tokens = min(BURST, bucket.tokens + (now - bucket.at) * RATE_PER_S)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _tally(self, identity: Identity, source: str, reason: str, name: str | None) -> None:
        tally = self._tallies.get((identity.key, reason))
        if tally is None:
            tally = self._tallies[(identity.key, reason)] = _Tally(identity, source)
        tally.count += 1
        if name is not None and len(tally.samples) < SAMPLE_NAMES:
            tally.samples.append(name[:80])

    def flush(self) -> None:
        """Hand the interval's refused and dropped queries to the audit trail, one row per
        instance and reason; forget buckets that have filled up again (idle instances)."""
        tallies, self._tallies = self._tallies, {}
        for (key, reason), t in tallies.items():
            i = t.identity
            self.audit.record(EgressEvent(
                source_ip=t.source, decision="denied", reason=reason, count=t.count,
                owner_id=i.owner_id, profile_id=i.profile_id, server=i.server_name,
                method="DNS", instance=f"{key.profile_id}/{key.server_name}",
                host=" ".join(t.samples)[:255] or None,
            ))  # fmt: skip
        now = self.clock()
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * RATE_PER_S >= BURST:
                del self._buckets[key]

    def answer(self, data: bytes, source: str, local: str | None) -> bytes | None:
        identity = self.identities.lookup(source)
        # Nobody's address, or not arrived at that instance's own host end: no answer.
        if identity is None or local != identity.host_ip:
            return None
        if not self._admit(identity):
            # Silently: an answer would only be more work for a flood.
            self.rate_limited += 1
            self._tally(identity, source, RATE_LIMITED, None)
            return None
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        allowed = False
        host = None
        try:
            host = canonical_host(name)
            allowed = self.policy_for(identity.key).matches(host)
        except HostError:
            pass
        if not allowed or question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.NXDOMAIN)
            self.refused += 1
            self._tally(identity, source, DENIED, host.name if host else name)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text(question.name, TTL, "IN", "A", SYNTHETIC_ADDRESS)
            )
            self.answered += 1
        # Allowed names of any other type (AAAA: the sandbox has no IPv6) get an empty
        # NOERROR answer.
        wire: bytes = response.to_wire()
        return wire


class DnsServer:
    """One UDP socket on every address; each answer leaves from the address its query
    reached (IP_PKTINFO), which is also how a query is tied to its host end. Written on
    the raw socket because asyncio's datagram endpoints hide that ancillary data."""

    def __init__(self, sock: socket.socket, dns_: SandboxDns) -> None:
        self.sock = sock
        self.dns = dns_
        self._loop = asyncio.get_running_loop()
        self._second = dns_.clock()
        self._this_second = 0
        self._paused: asyncio.TimerHandle | None = None
        self._flusher = self._loop.call_later(AGGREGATE_S, self._flush)
        self._loop.add_reader(sock.fileno(), self._ready)

    def _ready(self) -> None:
        now = self.dns.clock()
        if now - self._second >= 1.0:
            self._second, self._this_second = now, 0
        for _ in range(MAX_PER_WAKEUP):
            if self._this_second >= MAX_PER_SECOND:
                # Enough for this second: stop watching the socket until it is over.
                self._loop.remove_reader(self.sock.fileno())
                self._paused = self._loop.call_later(
                    max(0.0, self._second + 1.0 - now), self._resume
                )
                return
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(4096, _CMSG)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._this_second += 1
            local = None
            for level, kind, cdata in ancillary:
                if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(cdata) >= 12:
                    local = socket.inet_ntoa(cdata[8:12])
            try:
                reply = self.dns.answer(data, str(addr[0]), local)
            except Exception:
                log.exception("sandbox DNS: cannot answer %s", addr[0])
                continue
            if reply is None or local is None:
                continue
            info = struct.pack("=I4s4s", 0, socket.inet_aton(local), b"\0\0\0\0")
            with contextlib.suppress(OSError):
                self.sock.sendmsg([reply], [(socket.IPPROTO_IP, _IP_PKTINFO, info)], 0, addr)
        # Budget spent with datagrams maybe still waiting: the reader stays registered,
        # so the loop calls again after serving everyone else.

    def _resume(self) -> None:
        self._paused = None
        self._second, self._this_second = self.dns.clock(), 0
        self._loop.add_reader(self.sock.fileno(), self._ready)

    def _flush(self) -> None:
        self.dns.flush()
        self._flusher = self._loop.call_later(AGGREGATE_S, self._flush)

    def close(self) -> None:
        self._flusher.cancel()
        if self._paused is not None:
            self._paused.cancel()
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.dns.flush()


_CMSG = socket.CMSG_SPACE(12)


async def serve_dns(
    bind: str,
    port: int,
    identities: SourceTable,
    policy_for: Callable[[InstanceKey], EgressPolicy],
    audit: EgressAudit,
) -> DnsServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: with it, a local user's socket that sets it too could bind
        # the same address and port and take the jails' queries.
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        sock.bind((bind, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return DnsServer(sock, SandboxDns(identities, policy_for, audit))
