"""The SSRF guard, address by address: both edges of every blocked range, every IPv6
wrapper around an internal IPv4, and the public addresses that must stay dialable."""

from __future__ import annotations

import ipaddress

import pytest

from gigmcp.egress.hosts import canonical_host
from gigmcp.egress.ssrf import IPV4_BLOCKED, IPV6_BLOCKED, blocked_reason, filter_answers

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    "net", [n for n, _r in IPV4_BLOCKED] + [n for n, _r in IPV6_BLOCKED], ids=str
)
def test_attack_both_edges_of_every_blocked_range(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    assert blocked_reason(net.network_address) is not None
    assert blocked_reason(net.broadcast_address) is not None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.31.255.255", "private"),
        ("192.168.1.1", "private"), ("100.64.0.1", "cgnat"), ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud-metadata"), ("169.254.170.2", "cloud-metadata"),
        ("100.100.100.200", "cloud-metadata"), ("192.0.0.192", "cloud-metadata"),
        ("fd00:ec2::254", "cloud-metadata"), ("0.0.0.0", "this-network"),
        ("255.255.255.255", "broadcast"), ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
        ("192.0.2.1", "documentation"), ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"), ("fec0::1", "site-local"), ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"), ("64:ff9b:1::1", "nat64-local"),
        ("100::1", "discard"), ("4000::1", "reserved"),
    ],
)  # fmt: skip
def test_attack_internal_addresses_are_blocked_with_their_reason(address: str, reason: str) -> None:
    assert blocked_reason(ip(address)) == reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "cloud-metadata"),
        ("::ffff:0:a00:1", "private"),  # IPv4-translated (SIIT)
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("64:ff9b::a9fe:a9fe", "cloud-metadata"),
        ("2002:7f00:1::1", "loopback"),  # 6to4
        ("2002:a9fe:a9fe::1", "cloud-metadata"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("2001:0:7f00:1::1", "loopback"),  # Teredo, server 127.0.0.1
    ],
)
def test_attack_internal_ipv4_wrapped_in_ipv6_is_unwrapped(address: str, reason: str) -> None:
    assert blocked_reason(ip(address)) == reason


@pytest.mark.parametrize(
    "address",
    ["1.1.1.1", "8.8.8.8", "11.0.0.1", "203.0.114.1", "2606:4700:4700::1111",
     "2a00:1450:4001:81c::200e", "64:ff9b::808:808", "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_stay_dialable(address: str) -> None:
    assert blocked_reason(ip(address)) is None


def test_a_mapped_public_address_is_still_refused() -> None:
    # The proxy dials IPv4 as IPv4; a wrapped spelling has no honest use.
    assert blocked_reason(ip("::ffff:8.8.8.8")) == "ipv4-embedded"


@pytest.mark.parametrize(
    "spelling",
    ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
     "[::127.0.0.1]", "0251.0376.0251.0376", "0xa9fea9fe", "[::ffff:a9fe:a9fe]",
     "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]"],
)  # fmt: skip
def test_attack_canonicalised_spellings_are_all_caught(spelling: str) -> None:
    host = canonical_host(spelling)
    assert host.ip is not None and blocked_reason(host.ip) is not None


def test_only_vetted_answers_are_kept_in_order() -> None:
    answers = [ip("127.0.0.1"), ip("11.0.0.1"), ip("10.0.0.1"), ip("11.0.0.2"), ip("11.0.0.1")]
    ok, refused = filter_answers(answers)
    assert ok == [ip("11.0.0.1"), ip("11.0.0.2")]
    assert refused == [(ip("127.0.0.1"), "loopback"), (ip("10.0.0.1"), "private")]
