"""The sandboxes' resolver: answers names on the server's allowlist, and nothing else.

A jail's ``/etc/resolv.conf`` names its host end, and the namespace sends every DNS query
(UDP 53, to anywhere) here. An A query for an allowlisted name gets one synthetic
address, which the namespace redirects to the proxy anyway (TCP 80/443 to anywhere meet
the proxy): the real resolution is the proxy's, behind the SSRF guard, when the
connection arrives with its SNI or Host. Any other name is NXDOMAIN, answered here:
queries are never forwarded, so DNS is no way out (no tunnelling, no exfiltration in
query names).

Owns parsing queries (dnspython) and answering them. It must never forward a query,
answer a name off the allowlist, or answer a source address that belongs to no instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.egress.hosts import HostError, canonical_host
from gigmcp.egress.policy import EgressPolicy
from gigmcp.sandbox.identity import SourceTable
from gigmcp.upstream.types import InstanceKey

log = logging.getLogger(__name__)
# TEST-NET-1: never a real host; the namespace redirects 80/443 to it to the proxy.
SYNTHETIC_ADDRESS = "192.0.2.1"
TTL = 60
# <linux/in.h>; Python 3.11's socket module does not export it.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class SandboxDns:
    """Answers queries; :func:`serve_dns` feeds it datagrams."""

    def __init__(
        self,
        identities: SourceTable,
        policy_for: Callable[[InstanceKey], EgressPolicy],
        audit: EgressAudit,
    ) -> None:
        self.identities = identities
        self.policy_for = policy_for
        self.audit = audit
        self.answered = 0
        self.refused = 0

    def answer(self, data: bytes, source: str, local: str | None) -> bytes | None:
        identity = self.identities.lookup(source)
        # Nobody's address, or not arrived at that instance's own host end: no answer.
        if identity is None or local != identity.host_ip:
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
            self.audit.record(EgressEvent(
                source_ip=source, decision="denied", reason="dns-not-allowed",
                owner_id=identity.owner_id, profile_id=identity.profile_id,
                server=identity.server_name, method="DNS",
                instance=f"{identity.key.profile_id}/{identity.key.server_name}",
                host=(host.name if host else name)[:255],
            ))  # fmt: skip
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

    def _ready(self) -> None:
        while True:
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(4096, _CMSG)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
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

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        sock.bind((bind, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    server = DnsServer(sock, SandboxDns(identities, policy_for, audit))
    asyncio.get_running_loop().add_reader(sock.fileno(), server._ready)
    return server
