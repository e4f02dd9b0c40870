"""One spelling per host: every way to write an address or a name canonicalises to the
same thing, and what cannot be spelt one way is refused."""

from __future__ import annotations

import pytest

from gigmcp.egress.hosts import HostError, canonical_host, canonical_pattern, split_authority


@pytest.mark.parametrize(
    "raw",
    ["127.0.0.1", "127.1", "127.0.1", "0x7f.0.0.1", "0x7F.1", "0177.0.0.1", "0177.1",
     "2130706433", "0x7f000001", "017700000001", "127.0.0.1."],
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
    ],
)
def test_one_spelling_per_host(raw: str, name: str) -> None:
    assert canonical_host(raw).name == name


@pytest.mark.parametrize(
    "raw",
    ["", "a..b", ".a.com", "-a.com", "a-.com", "a_b.com", "x%2e.com", "user@host.com",
     "host:443", "evil.com/", "ev il.com", "a\x00.com", "a\r\n.com", "*.com", "[fe80::1%eth0]",
     "fe80::1%eth0", "[1.2.3.4]", "[::1", "256.1.1.1", "1.2.3.256", "1.2.3.4.5", "08.1.1.1",
     "foo.0x10", "foo.123", "a" * 64 + ".com", ("a." * 130) + "com", "x" * 2000],
)  # fmt: skip
def test_attack_what_cannot_be_spelt_one_way_is_refused(raw: str) -> None:
    with pytest.raises(HostError):
        canonical_host(raw)


def test_an_error_does_not_echo_a_long_input() -> None:
    with pytest.raises(HostError) as info:
        canonical_host("a_" * 500)
    assert len(str(info.value)) < 250


@pytest.mark.parametrize(
    ("authority", "default", "expected"),
    [
        ("api.example.com:443", None, ("api.example.com", 443)),
        ("API.example.com", 443, ("api.example.com", 443)),
        ("[::1]:8443", None, ("::1", 8443)),
        ("[::1]", 80, ("::1", 80)),
        ("127.1:80", None, ("127.0.0.1", 80)),
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
     "[::1]443", "api.example.com:٤٤٣"],
)  # fmt: skip
def test_attack_bad_authorities_are_refused(authority: str) -> None:
    with pytest.raises(HostError):
        split_authority(authority, None)


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [("*.Example.COM.", "*.example.com"), ("api.example.com", "api.example.com"),
     ("*.bücher.example", "*.xn--bcher-kva.example")],
)  # fmt: skip
def test_allowlist_patterns_are_canonical(raw: str, pattern: str) -> None:
    assert canonical_pattern(raw) == pattern


@pytest.mark.parametrize(
    "raw",
    ["*", "*.", "*.com", "*.*.example.com", "a.*.example.com", "*example.com", "1.2.3.4",
     "[::1]", "127.1", "host:443", "host/path", ""],
)  # fmt: skip
def test_attack_loose_allowlist_patterns_are_refused(raw: str) -> None:
    with pytest.raises(HostError):
        canonical_pattern(raw)
