"""One spelling per host: every way to write an address or a name canonicalises to the
same thing, and what cannot be spelt one way is refused."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import pytest

from gigmcp.netpolicy.hosts import HostError, canonical_host, canonical_pattern, split_authority

# 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters: the longest name DNS can carry.
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(
    "raw",
    ["127.0.0.1", "127.1", "127.0.1", "0x7f.0.0.1", "0x7F.1", "0177.0.0.1", "0177.1",
     "2130706433", "0x7f000001", "017700000001", "127.0.0.1.", "0x7f.0x0.0x0.0x1", "0X7F.1",
     "0000177.0.0.1", "127.0.0.01"],
)  # fmt: skip
def test_attack_every_numeric_spelling_of_loopback_is_loopback(raw: str) -> None:
    host = canonical_host(raw)
    assert (host.name, str(host.ip)) == ("127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize(
    "raw", ["169.254.169.254", "0251.0376.0251.0376", "0xa9fea9fe", "2852039166", "169.254.43518"]
)
def test_attack_every_spelling_of_the_metadata_address(raw: str) -> None:
    assert canonical_host(raw).name == "169.254.169.254"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("1.2.3.0x10", "1.2.3.16"),
        ("localhost", "localhost"),
        ("ｅｘａｍｐｌｅ.com", "example.com"),  # full-width letters, mapped by UTS46
        ("example。com", "example.com"),  # ideographic full stop is a dot
        ("4294967295", "255.255.255.255"),  # the largest one-part address
        ("1.16777215", "1.255.255.255"),  # the last part fills three bytes
        ("1.2.65535", "1.2.255.255"),
        ("0x", "0.0.0.0"),  # inet_aton and WHATWG: "0x" is zero
        ("1e2.com", "1e2.com"),  # a last label that is not numeric keeps this a name
        ("a" * 63 + ".com", "a" * 63 + ".com"),  # longest label
        (LONGEST_NAME, LONGEST_NAME),
    ],
)
def test_one_spelling_per_host(raw: str, name: str) -> None:
    assert canonical_host(raw).name == name


def test_ip_literals_carry_their_address_and_names_do_not() -> None:
    assert canonical_host("0x7f.1").ip == ipaddress.IPv4Address("127.0.0.1")
    assert canonical_host("[::1]").ip == ipaddress.IPv6Address("::1")
    assert canonical_host("[::1]").is_ip
    name = canonical_host("api.example.com")
    assert name.ip is None and not name.is_ip


@pytest.mark.parametrize(
    "raw",
    ["", "a..b", ".a.com", "-a.com", "a-.com", "a_b.com", "x%2e.com", "user@host.com",
     "host:443", "evil.com/", "ev il.com", "a\x00.com", "a\r\n.com", "*.com", "[fe80::1%eth0]",
     "fe80::1%eth0", "[1.2.3.4]", "[::1", "256.1.1.1", "1.2.3.256", "1.2.3.4.5", "08.1.1.1",
     "foo.0x10", "foo.123", "a" * 64 + ".com", ("a." * 130) + "com", "x" * 2000,
     LONGEST_NAME + "a", "evil.com\\", "evil.com?", "evil.com#", "a\tb.com", "a.com\x7f",
     "a\x85.com", "a\u2028b.com", "a\xa0b.com", "a\u3000b.com", " a.com", "a.com ", "::1\n",
     "[::1 ]", "[example.com]", "1.2.3.4]", "4294967296", "1.16777216", "1.2.65536",
     "0x100.1.1.1", "1..2.3", "1.2.3.4.5.", "a.0x", "１２７.０.０.１", "127。0。0。1", "foo.１２３",
     "ex：443", "ex＿ample.com", "xn--zz.com", "ab--cd.com", "[::ffff:127.000.0.1]"],
)  # fmt: skip
def test_attack_what_cannot_be_spelt_one_way_is_refused(raw: str) -> None:
    with pytest.raises(HostError):
        canonical_host(raw)


def test_an_error_does_not_echo_a_long_input() -> None:
    with pytest.raises(HostError) as info:
        canonical_host("a_" * 500)
    assert len(str(info.value)) < 250


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)


@pytest.mark.parametrize(
    ("call", "raw", "char"),
    [
        (canonical_host, "Z" * 2000, "Z"),  # too long to look at
        (canonical_host, "Z" * 300, "Z"),  # name too long
        (canonical_host, "Z" * 70 + ".com", "Z"),  # label too long
        (canonical_host, "Z" * 500 + "_", "Z"),
        (canonical_host, "Z" * 500 + "\x85", "Z"),
        (canonical_host, "Z" * 500 + "\u200d", "Z"),  # idna's own message quotes the input
        (canonical_host, "[" + "Z" * 500 + "]", "Z"),
        (canonical_host, "Z" * 500 + ":1", "Z"),
        (canonical_host, "0" + "9" * 500, "9"),  # a bad octal part
        (canonical_host, "1." + "9" * 500, "9"),  # a part too large
        (lambda raw: split_authority(raw, None), "Z" * 500 + ":44a", "Z"),
        (lambda raw: split_authority(raw, None), "Z" * 500 + "_:443", "Z"),
        (canonical_pattern, "*." + "Z" * 500 + "_", "Z"),
    ],
)
def test_attack_errors_are_one_line_and_quote_at_most_100_characters(
    call: Callable[[str], object], raw: str, char: str
) -> None:
    with pytest.raises(HostError) as info:
        call(raw)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert 0 < _longest_run(message, char) <= 100


@pytest.mark.parametrize(
    ("authority", "default", "expected"),
    [
        ("api.example.com:443", None, ("api.example.com", 443)),
        ("API.example.com", 443, ("api.example.com", 443)),
        ("[::1]:8443", None, ("::1", 8443)),
        ("[::1]", 80, ("::1", 80)),
        ("127.1:80", None, ("127.0.0.1", 80)),
        ("api.example.com:1", None, ("api.example.com", 1)),
        ("api.example.com:65535", None, ("api.example.com", 65535)),
        ("BÜCHER.example.:8443", None, ("xn--bcher-kva.example", 8443)),
    ],
)
def test_authorities_split_into_host_and_port(
    authority: str, default: int | None, expected: tuple[str, int]
) -> None:
    host, port = split_authority(authority, default)
    assert (host.name, port) == expected


@pytest.mark.parametrize(
    "authority",
    ["api.example.com", "api.example.com:", "api.example.com:0", "api.example.com:65536",
     "api.example.com:+443", "api.example.com: 443", "api.example.com:44a", "::1:443",
     "[::1]443", "api.example.com:٤٤٣", "api.example.com:¹", "api.example.com:-1",
     "api.example.com:0x1bb", "api.example.com:443 ", " api.example.com:443", "[::1]", "[::1]:",
     "[::1", "[[::1]]:443", "[1.2.3.4]:443", "user@api.example.com:443", ":443", "", "a.com:443:1",
     "api.example.com:000443", "[fe80::1%25eth0]:443"],
)  # fmt: skip
def test_attack_bad_authorities_are_refused(authority: str) -> None:
    with pytest.raises(HostError):
        split_authority(authority, None)


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [("*.Example.COM.", "*.example.com"), ("api.example.com", "api.example.com"),
     ("*.bücher.example", "*.xn--bcher-kva.example"), ("*.co.uk", "*.co.uk"),
     ("localhost", "localhost")],
)  # fmt: skip
def test_allowlist_patterns_are_canonical(raw: str, pattern: str) -> None:
    assert canonical_pattern(raw) == pattern


@pytest.mark.parametrize(
    "raw",
    ["*", "*.", "*.com", "*.*.example.com", "a.*.example.com", "*example.com", "1.2.3.4",
     "[::1]", "127.1", "host:443", "host/path", "", "*.co", "**.example.com", "a*.example.com",
     "*.1.2.3", "*.a..com", "*.example.com:443", "* .example.com", "exa mple.com"],
)  # fmt: skip
def test_attack_loose_allowlist_patterns_are_refused(raw: str) -> None:
    with pytest.raises(HostError):
        canonical_pattern(raw)
