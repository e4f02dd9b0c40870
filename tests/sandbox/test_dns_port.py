"""The sandboxes' DNS port is UDP to the gateway's resolver, at a bounded rate, and
nothing else.

Each wall lets a sandbox send at most ``DNS_RATE_PER_S`` queries a second (``DNS_BURST``
at once), counted per instance, so a flood is cut before it reaches the resolver's
socket that every jail shares. Nothing of ours listens on the DNS port (the proxy's base port + 3) over TCP, so a TCP
connection there from a jail could only meet a listener some other local program put
there: both walls drop it, in both sandbox modes, each wall by itself. And the
resolver's socket does not share its address: while the gateway holds it, no other
socket can bind the same address and port to take the jails' queries.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator

import pytest

from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.dns import serve_dns
from gigmcp.netpolicy.policy import EgressPolicy
from gigmcp.sandbox.firewall import DNS_BURST, DNS_RATE_PER_S
from gigmcp.sandbox.identity import SourceTable
from gigmcp.sandbox.netns import SandboxNetwork
from tests.support.gateway import free_port
from tests.support.netprobe import connect, run_in
from tests.support.sandbox_network import SUBNET, WALLS, keep_only, listener

BASE = 3128
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; not exported by Python 3.11
DNS = BASE + 3


@pytest.fixture(params=["root", "userns"])
async def net(request: pytest.FixtureRequest) -> AsyncIterator[SandboxNetwork]:
    """The network as the launcher builds it: the four proxy ports, the last one DNS."""
    network = SandboxNetwork(
        SUBNET,
        [BASE, BASE + 1, BASE + 2, DNS],
        pool_size=0,
        redirect=(BASE + 1, BASE + 2, DNS),
        mode=request.param,
    )
    await network.start()
    try:
        yield network
    finally:
        await network.aclose()


@pytest.mark.root
@WALLS
async def test_attack_tcp_to_the_dns_port_meets_no_listener(net: SandboxNetwork, wall: str) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    host = lease.slot.host_ip
    # A listener some local program put on the DNS port, over TCP, on every address.
    with listener("0.0.0.0", DNS) as seen:
        result = connect(net, lease, host, DNS)
        # Control: the proxy's own port behind the same wall(s) is reached.
        with listener(host, BASE) as proxy_seen:
            assert connect(net, lease, host, BASE)["ok"], "control: the proxy port answers"
    assert not result["ok"], f"a jail reached TCP {host}:{DNS} behind {wall}"
    assert result["error"] in ("TimeoutError", "PermissionError"), result
    assert seen == [], "no SYN reached the listener"
    assert proxy_seen == [lease.slot.sandbox_ip]


@pytest.mark.parametrize("option", ["SO_REUSEADDR", "SO_REUSEPORT"])
async def test_attack_a_second_socket_cannot_bind_the_resolvers_address(option: str) -> None:
    port = free_port()
    server = await serve_dns(
        "127.0.0.1", port, SourceTable(), lambda _key: EgressPolicy(()), EgressAudit(None)
    )
    try:
        # What another local user would try to take the jails' queries: the same
        # address and port, with the sharing option set on their side.
        thief = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            thief.setsockopt(socket.SOL_SOCKET, getattr(socket, option), 1)
            with pytest.raises(OSError) as refused:
                thief.bind(("127.0.0.1", port))
            assert refused.value.errno == errno.EADDRINUSE
        finally:
            thief.close()
    finally:
        server.close()


FLOOD = """
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = refused = 0
start = time.monotonic()
for i in range(n):
    try:
        s.sendto(b'q%d' % i, (host, port)); sent += 1
    except OSError:
        refused += 1
print(json.dumps({'sent': sent, 'refused': refused, 'elapsed': time.monotonic() - start}))
"""


@pytest.mark.root
@pytest.mark.parametrize("wall", ["both", "host-only", "inside-only", "none"])
async def test_attack_a_dns_flood_is_cut_per_instance_by_each_wall(
    net: SandboxNetwork, wall: str
) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Room for every datagram, so that what is missing was dropped by a wall.
        sink.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        sink.bind((lease.slot.host_ip, DNS))
        flood = run_in(net, lease, FLOOD, lease.slot.host_ip, str(DNS), "3000")
        sink.setblocking(False)
        received = 0
        while True:
            try:
                sink.recv(64)
            except BlockingIOError:
                break
            received += 1
    finally:
        sink.close()
    bound = DNS_BURST + DNS_RATE_PER_S * (flood["elapsed"] + 1.0)
    seen = f"{received} of 3000 arrived in {flood['elapsed']:.3f} s ({flood})"
    print(f"{net.mode}, walls {wall}: {seen}")
    if wall == "none":
        assert received > 2 * bound, f"control: without walls the flood arrives: {seen}"
    else:
        assert received <= bound, seen
        assert received >= DNS_BURST // 2, f"a burst of queries still arrives: {seen}"
