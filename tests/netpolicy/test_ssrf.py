"""The SSRF guard, address by address: both edges of every blocked range, every IPv6
wrapper around an internal IPv4, and the public addresses that must stay dialable."""

from __future__ import annotations

import ipaddress

import pytest

from gigmcp.netpolicy.hosts import canonical_host
from gigmcp.netpolicy.ssrf import (
    IPV4_BLOCKED,
    IPV6_BLOCKED,
    blocked_reason,
    dialable,
    filter_answers,
)

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
        ("169.254.169.123", "cloud-metadata"), ("fd00:ec2::23", "cloud-metadata"),
        ("0.255.255.255", "this-network"), ("10.255.255.255", "private"),
        ("172.16.0.0", "private"), ("192.168.255.255", "private"), ("100.127.255.255", "cgnat"),
        ("127.255.255.255", "loopback"), ("192.0.0.1", "ietf-special"),
        ("198.51.100.1", "documentation"), ("203.0.113.255", "documentation"),
        ("192.88.99.1", "6to4-relay"), ("198.19.255.255", "benchmarking"),
        ("239.255.255.255", "multicast"), ("255.255.255.254", "reserved"),
        ("3fff::1", "documentation"), ("5f00::1", "reserved"), ("::2", "this-network"),
        ("2001:2::1", "ietf-special"), ("::1:0:0:0", "reserved"), ("8000::1", "reserved"),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique-local"),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"),
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
        ("2001:0:808:808::5601:5601", "cloud-metadata"),  # Teredo, client 169.254.169.254
        ("::ffff:0:7f00:1", "loopback"),  # translated
        ("::a9fe:a9fe", "cloud-metadata"),  # compatible
        ("64:ff9b::a00:1", "private"),  # NAT64
        ("64:ff9b::ffff:ffff", "broadcast"),
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
        ("2002::1", "this-network"),  # 6to4 of 0.0.0.0
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


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "::ffff:0:808:808", "::8.8.8.8"])
def test_a_wrapped_public_address_is_still_refused(address: str) -> None:
    # The proxy dials IPv4 as IPv4; mapped, translated and compatible spellings have no
    # honest use (NAT64 and 6to4 do: they reach the public address through a gateway).
    assert blocked_reason(ip(address)) == "ipv4-embedded"


def test_teredo_with_public_ends_is_still_special_purpose() -> None:
    # Server 8.8.8.8, client 8.8.8.8 (stored inverted): nothing internal, still not dialled.
    assert blocked_reason(ip("2001:0:808:808::f7f7:f7f7")) == "ietf-special"


@pytest.mark.parametrize("address", ["127.0.0.1", "8.8.8.8", "::1", "2606:4700:4700::1111"])
def test_dialable_agrees_with_blocked_reason(address: str) -> None:
    assert dialable(ip(address)) is (blocked_reason(ip(address)) is None)


@pytest.mark.parametrize(
    "spelling",
    ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
     "[::127.0.0.1]", "0251.0376.0251.0376", "0xa9fea9fe", "[::ffff:a9fe:a9fe]",
     "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]", "2852039166", "169.254.43518", "0xa9.0xfe.0xa9fe",
     "0177.1", "0x7f000001", "017700000001", "127.0.1", "[::ffff:0:7f00:1]", "[2002:7f00:1::]",
     "[64:ff9b::7f00:1]", "0", "0x0", "[::]", "[::1]", "[fd00:ec2::254]"],
)  # fmt: skip
def test_attack_canonicalised_spellings_are_all_caught(spelling: str) -> None:
    host = canonical_host(spelling)
    assert host.ip is not None and blocked_reason(host.ip) is not None


def test_only_vetted_answers_are_kept_in_order() -> None:
    answers = [ip("127.0.0.1"), ip("11.0.0.1"), ip("10.0.0.1"), ip("11.0.0.2"), ip("11.0.0.1")]
    ok, refused = filter_answers(answers)
    assert ok == [ip("11.0.0.1"), ip("11.0.0.2")]
    assert refused == [(ip("127.0.0.1"), "loopback"), (ip("10.0.0.1"), "private")]


def test_attack_an_answer_of_only_internal_addresses_leaves_nothing_to_dial() -> None:
    ok, refused = filter_answers([ip("169.254.169.254"), ip("::ffff:127.0.0.1")])
    assert ok == []
    assert [reason for _ip, reason in refused] == ["cloud-metadata", "loopback"]
