"""The SSRF guard knows the gateway host's own addresses.

A name the sandbox may reach that resolves to an address of the host itself would reach
the host's services (the gateway's API when it listens beyond loopback, a container
engine's socket, the kubelet) — public-looking addresses the special-purpose tables
cannot know. Each attack runs against the real proxy in the egress lab, whose real DNS
server answers the names, with recording listeners on the host addresses: a refusal
that still reached one fails the test. The last tests ask this machine's own kernel
about every address of every interface it has.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.egress_lab import (
    HOST6_IP,
    HOST6_NAME,
    HOST_IP,
    HOST_NAMES,
    Lab,
    host_address,
    lab,
)
from tests.support.proxy import running_proxy

HOSTS = ["api.example.test", "internal.example.test", "private.example.test", HOST6_NAME,
         *HOST_NAMES]  # fmt: skip
WEB = [443, 80]


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _reason(body: str) -> str:
    return str(json.loads(body)["reason"])


@pytest.mark.root
async def test_attack_a_name_resolving_to_the_hosts_primary_address_is_refused(
    the_lab: Lab, tmp_path: Path
) -> None:
    async with running_proxy(the_lab, tmp_path, HOSTS, WEB) as run:
        status, body, _ = await run.curl("http://self.example.test/")
        assert (status, _reason(body)) == (502, "ssrf-blocked")
        status, _, _ = await run.curl("https://self.example.test/")
        assert status in (0, 502)
        assert the_lab.host_hits() == [], "a host service was reached"
        rows = [r for r in await run.audit_rows() if r.host == "self.example.test"]
        assert len(rows) >= 2 and {(r.decision, r.reason) for r in rows} == {
            ("denied", "ssrf-blocked")
        }
        # The public upstream beside it is still reached.
        status, _, err = await run.curl("http://api.example.test/ok")
        assert status == 200, err


@pytest.mark.root
async def test_attack_a_name_resolving_to_an_address_of_another_interface_is_refused(
    the_lab: Lab, tmp_path: Path
) -> None:
    with host_address(the_lab, HOST_NAMES["hostsvc.example.test"]):
        async with running_proxy(the_lab, tmp_path, HOSTS, [*WEB, 2375], extra_ports=[2375]) as run:
            for url in ("http://hostsvc.example.test/", "http://hostsvc.example.test:2375/"):
                status, body, _ = await run.curl(url)
                assert (status, _reason(body)) == (502, "ssrf-blocked"), url
            assert the_lab.host_hits() == []
            rows = [r for r in await run.audit_rows() if r.host == "hostsvc.example.test"]
            assert {(r.port, r.reason) for r in rows} == {
                (80, "ssrf-blocked"),
                (2375, "ssrf-blocked"),
            }


@pytest.mark.root
async def test_attack_an_ipv6_address_of_the_host_is_refused(the_lab: Lab, tmp_path: Path) -> None:
    with host_address(the_lab, HOST6_IP):
        async with running_proxy(the_lab, tmp_path, HOSTS, WEB) as run:
            status, body, _ = await run.curl(f"http://{HOST6_NAME}/")
            assert (status, _reason(body)) == (502, "ssrf-blocked")
            assert the_lab.host_hits() == []


@pytest.mark.root
async def test_attack_an_address_added_after_the_gateway_started_is_refused_too(
    the_lab: Lab, tmp_path: Path
) -> None:
    late = HOST_NAMES["late.example.test"]
    async with running_proxy(the_lab, tmp_path, HOSTS, WEB) as run:
        # Before: nothing there, nowhere to go (the guard has seen this name's address
        # and let it pass, as it should: it was nobody's).
        status, body, _ = await run.curl("http://late.example.test/")
        assert (status, _reason(body)) == (502, "connect-failed")
        with host_address(the_lab, late):
            status, body, _ = await run.curl("http://late.example.test/")
            assert (status, _reason(body)) == (502, "ssrf-blocked")
            assert the_lab.host_hits() == []
        # And when the address goes away again, it is nobody's again.
        status, body, _ = await run.curl("http://late.example.test/")
        assert (status, _reason(body)) == (502, "connect-failed")


@pytest.mark.root
async def test_the_operator_allow_list_lets_a_host_address_through(
    the_lab: Lab, tmp_path: Path
) -> None:
    allow = [ipaddress.ip_network(f"{HOST_IP}/32")]
    async with running_proxy(the_lab, tmp_path, HOSTS, WEB, allow_host_addresses=allow) as run:
        status, body, err = await run.curl("http://self.example.test/api")
        assert status == 200, err
        assert json.loads(body)["server"] == HOST_IP
        assert the_lab.host_hits() == [(HOST_IP, 80)]
        # Only what is listed: another address of the host stays refused.
        with host_address(the_lab, HOST_NAMES["hostsvc.example.test"]):
            status, body, _ = await run.curl("http://hostsvc.example.test/")
            assert (status, _reason(body)) == (502, "ssrf-blocked")


@pytest.mark.root
async def test_attack_the_allow_list_never_lifts_the_special_purpose_tables(
    the_lab: Lab, tmp_path: Path
) -> None:
    allow = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "::1/128")]
    async with running_proxy(the_lab, tmp_path, HOSTS, WEB, allow_host_addresses=allow) as run:
        for name in ("internal", "private"):
            status, body, _ = await run.curl(f"http://{name}.example.test/")
            assert (status, _reason(body)) == (502, "ssrf-blocked"), name
        assert the_lab.internal_hits() == []


# -- this machine's own interfaces (no lab: the namespace pytest runs in) ----------------


def _interface_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = subprocess.run(["ip", "-j", "address", "show"], capture_output=True, check=True)
    found = []
    for link in json.loads(out.stdout):
        for info in link.get("addr_info", []):
            found.append(ipaddress.ip_address(info["local"].split("%")[0]))
    return found


def test_attack_every_address_of_every_interface_of_this_host_is_refused() -> None:
    from gigmcp.netpolicy.hostaddr import HostAddresses

    guard = HostAddresses()
    addresses = _interface_addresses()
    assert addresses, "ip -j address show listed nothing"
    for address in addresses:
        assert guard.reason(address) is not None, address


def test_a_foreign_public_address_is_not_the_hosts() -> None:
    from gigmcp.netpolicy.hostaddr import HostAddresses

    guard = HostAddresses()
    mine = set(_interface_addresses())
    for text in ("11.0.0.1", "2a10:8:8::8"):
        address = ipaddress.ip_address(text)
        if address not in mine:
            assert guard.reason(address) is None, address


@pytest.mark.root
def test_attack_a_local_route_makes_a_whole_range_the_hosts(the_lab: Lab) -> None:
    # ``ip route add local NET dev lo`` (AnyIP): no interface holds these addresses, yet
    # the host answers on every one of them. The kernel's own routing answer covers it.
    from gigmcp.netpolicy.hostaddr import HostAddresses

    guard = HostAddresses()
    inside = ipaddress.ip_address("11.3.0.77")
    assert guard.reason(inside) is None
    subprocess.run(["ip", "route", "add", "local", "11.3.0.0/24", "dev", "lo"], check=True)
    try:
        assert guard.reason(inside) == "host-address"
        assert HostAddresses([ipaddress.ip_network("11.3.0.0/24")]).reason(inside) is None
    finally:
        subprocess.run(["ip", "route", "del", "local", "11.3.0.0/24", "dev", "lo"], check=True)
    assert guard.reason(inside) is None
