"""The network of a sandbox, attack by attack: its only way out is the proxy port of its
own host end. Probes run inside real namespaces as uid 65534; every listener is on an
address the test made (its sandbox's host end, loopback, or a namespace of its own).

Two walls stand in the way: the host table and the table inside each sandbox namespace.
The attacks marked ``WALLS`` run three times: with both, and with each wall alone (the
other one deleted, as a host ``nft flush ruleset`` would delete the host's), so each wall
is shown to hold by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from gigmcp.sandbox.addresses import PoolExhausted
from gigmcp.sandbox.firewall import TABLE, inside_ruleset
from gigmcp.sandbox.netns import NetLease, NetworkError, SandboxNetwork
from gigmcp.sandbox.nft import Nft
from tests.support.netprobe import connect, run_in, spawn_in
from tests.support.sandbox_network import (
    SUBNET,
    WALLS,
    keep_only,
    listener,
    outside_namespace,
)

pytestmark = pytest.mark.root

PROXY_PORT = 3128


@pytest.fixture(params=["root", "userns"])
async def net(request: pytest.FixtureRequest) -> AsyncIterator[SandboxNetwork]:
    """Every attack below runs against both ways of building the namespace."""
    network = SandboxNetwork(SUBNET, [PROXY_PORT], pool_size=0, mode=request.param)
    await network.start()
    try:
        yield network
    finally:
        await network.aclose()


async def test_a_sandbox_reaches_the_proxy_port_of_its_own_host_end(net: SandboxNetwork) -> None:
    lease = await net.acquire()
    with listener(lease.slot.host_ip, PROXY_PORT) as seen:
        assert connect(net, lease, lease.slot.host_ip, PROXY_PORT) == {"ok": True, "data": "pong"}
    assert seen == [lease.slot.sandbox_ip]


@WALLS
async def test_attack_other_ports_of_the_host_end_are_dropped(
    net: SandboxNetwork, wall: str
) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    with listener(lease.slot.host_ip, 8080) as seen:
        result = connect(net, lease, lease.slot.host_ip, 8080)
    assert not result["ok"]
    assert result["error"] in ("TimeoutError", "PermissionError")  # dropped on the way in or out
    assert seen == []


@WALLS
async def test_a_sandbox_reaches_the_proxy_behind_either_wall(
    net: SandboxNetwork, wall: str
) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    with listener(lease.slot.host_ip, PROXY_PORT) as seen:
        assert connect(net, lease, lease.slot.host_ip, PROXY_PORT)["ok"]
    assert seen == [lease.slot.sandbox_ip]


@WALLS
async def test_attack_udp_to_the_proxy_address_is_dropped(net: SandboxNetwork, wall: str) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    with listener(lease.slot.host_ip, PROXY_PORT, "udp") as seen:
        result = connect(net, lease, lease.slot.host_ip, PROXY_PORT, "udp")
    assert not result["ok"]
    assert seen == []


async def test_attack_host_loopback_services_are_unreachable(net: SandboxNetwork) -> None:
    lease = await net.acquire()
    with listener("127.0.0.1", 18080) as seen:
        # 127.0.0.1 inside is the sandbox's own loopback: refused there, never the host's.
        inside = connect(net, lease, "127.0.0.1", 18080)
        assert not inside["ok"] and inside["error"] == "ConnectionRefusedError"
    assert seen == []


@WALLS
async def test_attack_the_hosts_other_addresses_are_unreachable(
    net: SandboxNetwork, wall: str
) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    ours = await asyncio.to_thread(_host_addresses)
    others = sorted(a for a in ours if a and not a.startswith(("127.", "10.213.")))
    if not others:
        pytest.skip("this host has no address besides loopback and the sandbox pool")
    with listener("0.0.0.0", PROXY_PORT) as seen:
        result = connect(net, lease, others[0], PROXY_PORT)
        own = connect(net, lease, lease.slot.host_ip, PROXY_PORT)
    assert not result["ok"], f"reached the host's {others[0]} through the sandbox link"
    assert own["ok"], "control: the proxy port of its own host end answers"
    assert seen == [lease.slot.sandbox_ip]


@WALLS
async def test_attack_another_sandbox_is_unreachable(net: SandboxNetwork, wall: str) -> None:
    a, b = await net.acquire(), await net.acquire()
    keep_only(net, wall, a, b)
    with listener(b.slot.host_ip, PROXY_PORT) as seen:
        # b's host end is the proxy for b only.
        assert not connect(net, a, b.slot.host_ip, PROXY_PORT)["ok"]
        assert connect(net, b, b.slot.host_ip, PROXY_PORT)["ok"], "control"
    assert seen == [b.slot.sandbox_ip]
    # A server inside b, listening on b's own address.
    server = spawn_in(
        net,
        b,
        [
            "/usr/bin/python3",
            "-c",
            (
                "import socket;s=socket.socket();s.bind(('0.0.0.0',4000));s.listen();"
                "print('up',flush=True);c,_=s.accept();c.sendall(b'pong')"
            ),
        ],
        root=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"up"
        assert not connect(net, a, b.slot.sandbox_ip, 4000)["ok"]
        # Nor does the host open connections into a sandbox.
        with pytest.raises(OSError):
            socket.create_connection((b.slot.sandbox_ip, 4000), timeout=1.5).close()
    finally:
        server.kill()
        server.wait()


@WALLS
async def test_the_host_sends_nothing_new_into_a_sandbox(net: SandboxNetwork, wall: str) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    inner = udp_sink_inside(net, lease)
    with contextlib.suppress(OSError):  # EPERM from our drop is the expected outcome
        subprocess.run(["/usr/bin/python3", "-c", UDP_SEND, lease.slot.sandbox_ip], check=False)
    assert inner.communicate(timeout=5)[0].strip() == "nothing"


async def test_attack_the_sandbox_cannot_touch_its_own_wall_address_or_routes(
    net: SandboxNetwork,
) -> None:
    lease = await net.acquire()
    tamper = """
    import json, subprocess
    out = {}
    for name, cmd in {
        'drop wall': ['/usr/sbin/nft', 'delete', 'table', 'inet', 'gigmcp'],
        'new route': ['/usr/sbin/ip', 'route', 'add', '11.0.0.0/8', 'dev', 'eth0'],
        'new address': ['/usr/sbin/ip', 'addr', 'add', '10.99.99.99/32', 'dev', 'eth0'],
        'lo down': ['/usr/sbin/ip', 'link', 'set', 'lo', 'down'],
        'ipv6 on': ['/bin/sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6'],
    }.items():
        out[name] = subprocess.run(cmd, capture_output=True).returncode
    print(json.dumps(out))
    """
    result = run_in(net, lease, tamper)
    assert all(rc != 0 for rc in result.values()), result
    # Control: the namespace's owner can (so the refusals above are about privilege, not
    # broken commands) — and puts the wall back.
    owner = run_in(net, lease, tamper, root=True)
    assert owner["drop wall"] == 0 and owner["new address"] == 0, owner
    rebuild = spawn_in(net, lease, ["nft", "-f", "-"], root=True, stdin=subprocess.PIPE)
    rebuild.communicate(inside_ruleset(lease.slot.host_ip, [PROXY_PORT]).encode(), timeout=10)
    assert rebuild.returncode == 0
    check = spawn_in(
        net, lease, ["nft", "list", "table", "inet", TABLE], root=True, stdout=subprocess.PIPE
    )
    listing = check.communicate(timeout=10)[0].decode()
    assert "policy drop" in listing, "the namespace's own wall is still standing"
    with listener(lease.slot.host_ip, PROXY_PORT):
        assert connect(net, lease, lease.slot.host_ip, PROXY_PORT)["ok"], "and works"


async def test_attack_ipv6_is_off_inside(net: SandboxNetwork) -> None:
    lease = await net.acquire()
    result = run_in(
        net,
        lease,
        """
        import json, socket
        addrs = open('/proc/net/if_inet6').read().strip()
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.settimeout(1)
            s.connect(('::1', 3128)); r = 'connected'
        except OSError as e:
            r = type(e).__name__
        print(json.dumps({'addrs': addrs, 'connect': r}))
        """,
    )
    assert result["addrs"] == ""
    assert result["connect"] != "connected"


UDP_SINK = (
    "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
    "s.bind((sys.argv[1],4443));s.settimeout(2);print('up',flush=True)\n"
    "try:\n d,a=s.recvfrom(64);print(a[0],flush=True)\nexcept OSError:\n print('nothing',flush=True)"
)


def udp_sink_inside(net: SandboxNetwork, lease: NetLease) -> subprocess.Popen[str]:
    """A one-datagram UDP listener on the sandbox's own address, started inside it."""
    sink = spawn_in(
        net,
        lease,
        ["/usr/bin/python3", "-c", UDP_SINK, lease.slot.sandbox_ip],
        root=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "up"
    return sink


UDP_SEND = "import socket,sys;socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'x',(sys.argv[1],4443))"
UDP_SEND_TRY = f"""
import json
try:
    {UDP_SEND}; r = 'yes'
except OSError as e:
    r = type(e).__name__
print(json.dumps({{'sent': r}}))
"""


@WALLS
async def test_attack_nothing_is_forwarded_either_way_even_with_forwarding_on(
    net: SandboxNetwork, wall: str
) -> None:
    lease = await net.acquire()
    keep_only(net, wall, lease)
    with outside_namespace() as outside:
        # Control: the outside namespace hears the host, so only our rules stand between.
        sink = subprocess.Popen(
            ["ip", "netns", "exec", outside, "/usr/bin/python3", "-c", UDP_SINK, "10.250.9.2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sink.stdout is not None and sink.stdout.readline().strip() == "up"
        subprocess.run(["/usr/bin/python3", "-c", UDP_SEND, "10.250.9.2"], check=True)
        assert sink.communicate(timeout=5)[0].strip() == "10.250.9.1"
        for ifname in (lease.slot.host_ifname, "gmtout0"):
            with open(f"/proc/sys/net/ipv4/conf/{ifname}/forwarding", "w") as f:
                f.write("1")  # the kernel would now route between the two links
        # Sandbox -> outside, one datagram: does it arrive?
        sink = subprocess.Popen(
            ["ip", "netns", "exec", outside, "/usr/bin/python3", "-c", UDP_SINK, "10.250.9.2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sink.stdout is not None and sink.stdout.readline().strip() == "up"
        sent = run_in(net, lease, UDP_SEND_TRY, "10.250.9.2")
        assert sent["sent"] in ("yes", "PermissionError")  # the wall inside answers EPERM
        assert sink.communicate(timeout=5)[0].strip() == "nothing"
        # Outside -> sandbox: does it arrive?
        inner = udp_sink_inside(net, lease)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                outside,
                "/usr/bin/python3",
                "-c",
                UDP_SEND,
                lease.slot.sandbox_ip,
            ],
            check=True,
        )
        assert inner.communicate(timeout=5)[0].strip() == "nothing"


async def test_attack_a_spoofed_source_address_is_dropped(net: SandboxNetwork) -> None:
    a, b = await net.acquire(), await net.acquire()
    # A test-owned table counts what gets past our guard (it hooks in after it).
    watch = (
        "table inet gmtest_watch {\n chain pre {\n type filter hook prerouting priority raw + 10;\n"
        f' iifname "{a.slot.host_ifname}" ip saddr {b.slot.sandbox_ip} counter\n'
        f' iifname "{a.slot.host_ifname}" ip saddr {a.slot.sandbox_ip} counter\n }}\n}}\n'
    )
    spoof = f"""
    import json, socket, subprocess
    subprocess.run(['ip', 'addr', 'add', '{b.slot.sandbox_ip}/32', 'dev', 'eth0'], check=True)
    out = {{}}
    for src in ('{a.slot.sandbox_ip}', '{b.slot.sandbox_ip}'):
        s = socket.socket(); s.settimeout(1.5); s.bind((src, 0))
        try:
            s.connect(('{a.slot.host_ip}', {PROXY_PORT})); out[src] = 'connected'
        except OSError as e:
            out[src] = type(e).__name__
    print(json.dumps(out))
    """
    with Nft() as n:
        n.run(watch)
        try:
            with listener(a.slot.host_ip, PROXY_PORT) as seen:
                # Root inside the namespace (stronger than any jailed server) forges b's address.
                result = run_in(net, a, spoof, root=True)
            counters = n.run("list table inet gmtest_watch")
        finally:
            n.run("delete table inet gmtest_watch")
    assert result[a.slot.sandbox_ip] == "connected", "control: its own address works"
    assert result[b.slot.sandbox_ip] == "TimeoutError"
    assert seen == [a.slot.sandbox_ip]
    lines = [line for line in counters.splitlines() if "counter" in line]
    forged = next(line for line in lines if b.slot.sandbox_ip in line)
    genuine = next(line for line in lines if f"saddr {a.slot.sandbox_ip} " in line)
    assert "packets 0 " in forged, f"forged packets got past the guard: {forged.strip()}"
    assert "packets 0 " not in genuine, "control: genuine packets are counted"


@pytest.mark.parametrize("wall", ["both", "host-only", "inside-only", "none"])
async def test_attack_ipv6_switched_back_on_by_root_inside_still_goes_nowhere(
    net: SandboxNetwork, wall: str
) -> None:
    # IPv6 is off on both ends; suppose it were not (root in the namespace turning it
    # on, a host sysctl default): the walls must drop IPv6 by themselves.
    lease = await net.acquire()
    host_if = lease.slot.host_ifname
    Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("0")
    subprocess.run(["ip", "-6", "addr", "add", "fd9c::1/64", "dev", host_if, "nodad"], check=True)
    turn_on = """
    import json, subprocess
    for knob in ('all', 'default', 'eth0'):
        open(f'/proc/sys/net/ipv6/conf/{knob}/disable_ipv6', 'w').write('0')
    subprocess.run(['ip', '-6', 'addr', 'add', 'fd9c::2/64', 'dev', 'eth0', 'nodad'], check=True)
    print(json.dumps({'on': True}))
    """
    assert run_in(net, lease, turn_on, root=True) == {"on": True}
    keep_only(net, wall, lease)
    with listener("fd9c::1", PROXY_PORT) as seen:
        result = connect(net, lease, "fd9c::1", PROXY_PORT)
    if wall == "none":
        assert result == {"ok": True, "data": "pong"}, "control: without walls it connects"
        assert seen == ["fd9c::2"]
    else:
        assert not result["ok"] and result["error"] in ("TimeoutError", "PermissionError"), result
        assert seen == []


async def test_a_removed_host_table_is_put_back_with_every_running_sandbox(
    net: SandboxNetwork,
) -> None:
    lease = await net.acquire()
    assert await net.check_table() is False, "control: nothing to restore"
    with Nft() as n:
        # What a host firewall reload does to it (never flush the whole ruleset here: it
        # would take the machine's own firewall with it).
        n.run(f"delete table inet {TABLE}")
    assert await net.check_table() is True
    listing = net.firewall_listing()
    assert f'"{lease.slot.host_ifname}" . {lease.slot.sandbox_ip}' in listing
    # Restored, it works again as the only wall.
    keep_only(net, "host-only", lease)
    with listener(lease.slot.host_ip, 8080) as seen:
        assert not connect(net, lease, lease.slot.host_ip, 8080)["ok"]
    with listener(lease.slot.host_ip, PROXY_PORT):
        assert connect(net, lease, lease.slot.host_ip, PROXY_PORT)["ok"]
    assert seen == []


async def test_an_exhausted_pool_refuses_cleanly() -> None:
    network = SandboxNetwork("10.213.1.0/28", [PROXY_PORT], pool_size=0)
    await network.start()
    try:
        leases = [await network.acquire() for _ in range(4)]
        with pytest.raises(PoolExhausted, match="exhausted .*GIG_SANDBOX_SUBNET"):
            await network.acquire()
        await network.release(leases[0])
        await network.acquire()  # a released slot is usable again
    finally:
        await network.aclose()


async def test_a_subnet_that_overlaps_a_host_address_is_refused() -> None:
    network = SandboxNetwork("127.0.0.0/24", [PROXY_PORT], pool_size=0)
    with pytest.raises(NetworkError, match="overlaps the host address 127.0.0.1"):
        await network.start()
    await network.aclose()


async def test_a_second_gateway_cannot_take_over_the_sandbox_network(net: SandboxNetwork) -> None:
    other = SandboxNetwork("10.213.2.0/24", [PROXY_PORT], pool_size=0)
    with pytest.raises(NetworkError, match="another gateway"):
        await other.start()
    await other.aclose()


def _host_addresses() -> set[str]:
    # pyroute2's synchronous API runs an event loop of its own: never on the test's loop.
    with IPRoute() as ipr:
        return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)}


def _links_sync() -> set[str]:
    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


async def _links() -> set[str]:
    return await asyncio.to_thread(_links_sync)


async def test_start_up_removes_what_a_crashed_run_left() -> None:
    subprocess.run(
        ["ip", "link", "add", "gmv4000", "type", "veth", "peer", "name", "gmvpeer"], check=True
    )
    with Nft() as n:  # a stale table with a stale element
        n.run(f"add table inet {TABLE}\nadd chain inet {TABLE} stale\n")
    network = SandboxNetwork(SUBNET, [PROXY_PORT], pool_size=0)
    try:
        removed = await network.start()
        assert "gmv4000" in removed
        links = await _links()
        assert "gmv4000" not in links and "gmvpeer" not in links
        assert "stale" not in network.firewall_listing()
    finally:
        await network.aclose()


def _holders() -> list[int]:
    """Namespace holders (userns mode) still running: unshare'd shells of ours."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmd.startswith(b"/bin/sh\0-c\0set -e; echo 1 > /proc/sys/net/ipv6"):
                found.append(int(pid))
    return found


@pytest.mark.parametrize("mode", ["root", "userns"])
async def test_many_cycles_leave_no_interface_element_descriptor_or_process(mode: str) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    links_before = await _links()
    network = SandboxNetwork(SUBNET, [PROXY_PORT], pool_size=2, mode=mode)
    await network.start()
    try:
        for _ in range(10):
            leases = [await network.acquire() for _ in range(3)]
            for lease in leases:
                await network.release(lease)
    finally:
        await network.aclose()
    assert await _links() == links_before
    with Nft() as n:
        assert TABLE not in n.run("list tables")
    assert set(os.listdir("/proc/self/fd")) <= fds_before | {"3"}  # listdir's own fd
    assert _holders() == []


@pytest.mark.parametrize("mode", ["root", "userns"])
async def test_tcp_80_and_443_to_anywhere_meet_the_proxy_instead(mode: str) -> None:
    # What a client that ignores HTTPS_PROXY does: connect straight to an address. The
    # namespace sends it to the proxy's transparent ports; nothing else leaves.
    network = SandboxNetwork(
        SUBNET, [3128, 3129, 3130, 3131], pool_size=0, redirect=(3129, 3130, 3131), mode=mode
    )
    await network.start()
    try:
        lease = await network.acquire()
        host = lease.slot.host_ip
        with listener(host, 3130) as tls_seen, listener(host, 3129) as http_seen:
            assert connect(network, lease, "11.0.0.1", 443) == {"ok": True, "data": "pong"}
            assert connect(network, lease, "11.0.0.1", 80) == {"ok": True, "data": "pong"}
            other = connect(network, lease, "11.0.0.1", 8443)
        assert tls_seen == [lease.slot.sandbox_ip] and http_seen == [lease.slot.sandbox_ip]
        # DNS to anywhere is answered by the proxy's resolver; other UDP goes nowhere.
        with listener(host, 3131, "udp") as dns_seen:
            assert connect(network, lease, "11.0.0.1", 53, "udp")["ok"]
            assert not connect(network, lease, "11.0.0.1", 5353, "udp")["ok"]
        assert dns_seen == [lease.slot.sandbox_ip]
        assert not other["ok"] and other["error"] in ("PermissionError", "TimeoutError")
    finally:
        await network.aclose()
