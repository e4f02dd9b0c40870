"""The allowlist: exact hosts, or one extra label under a "*." suffix; then the port."""

from __future__ import annotations

import pytest

from gigmcp.netpolicy.hosts import HostError, canonical_host
from gigmcp.netpolicy.policy import EgressPolicy, PortRules

POLICY = EgressPolicy(["api.example.com", "*.svc.example.com", "bücher.example"])


@pytest.mark.parametrize(
    "host",
    ["api.example.com", "API.EXAMPLE.COM.", "eu.svc.example.com", "XN--BCHER-KVA.EXAMPLE.",
     "bücher.example"],
)  # fmt: skip
def test_allowed_hosts_in_any_spelling(host: str) -> None:
    assert POLICY.check(canonical_host(host), 443).allowed


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("api.example.com.evil.com", "host-not-allowed"),
        ("evilapi.example.com", "host-not-allowed"),
        ("example.com", "host-not-allowed"),
        ("svc.example.com", "host-not-allowed"),  # "*." needs one more label
        ("a.b.svc.example.com", "host-not-allowed"),  # ... exactly one
        ("evilexample.com", "host-not-allowed"),
        ("svc.example.com.evil.com", "host-not-allowed"),
        ("eu.svc.example.com.evil.com", "host-not-allowed"),
        ("eusvc.example.com", "host-not-allowed"),
        ("xn--bcher-kva.example.evil.com", "host-not-allowed"),
        ("bucher.example", "host-not-allowed"),  # the ASCII look-alike is another host
        ("127.0.0.1", "ip-literal"),
        ("[::1]", "ip-literal"),
        ("2130706433", "ip-literal"),
    ],
)
def test_attack_hosts_outside_the_allowlist(host: str, reason: str) -> None:
    decision = POLICY.check(canonical_host(host), 443)
    assert not decision.allowed and decision.reason == reason


def test_ports_are_443_unless_the_manifest_says_otherwise() -> None:
    host = canonical_host("api.example.com")
    assert POLICY.check(host, 443).allowed
    assert EgressPolicy(["api.example.com"], [443, 80]).check(host, 80).allowed
    for port in (80, 22, 8443, 3128):
        assert POLICY.check(host, port).reason == "port-not-allowed"
    # 8443 is not a port the operator allowed (GIG_EGRESS_EXTRA_PORTS): listed but refused.
    assert EgressPolicy(["api.example.com"], [8443]).check(host, 8443).reason == (
        "port-not-permitted"
    )
    assert EgressPolicy(["api.example.com"], [8443], PortRules([8443])).check(host, 8443).allowed
    assert EgressPolicy(["api.example.com"], [8443]).check(host, 443).reason == "port-not-allowed"


@pytest.mark.parametrize("port", [0, -1, 65536, 22, 8080])
def test_attack_ports_outside_the_policy_are_refused(port: int) -> None:
    decision = POLICY.check(canonical_host("api.example.com"), port)
    assert not decision.allowed and decision.reason == "port-not-allowed"


@pytest.mark.parametrize(
    ("host", "matched"),
    [("api.example.com", True), ("eu.svc.example.com", True), ("svc.example.com", False),
     ("a.b.svc.example.com", False), ("127.0.0.1", False), ("XN--BCHER-KVA.EXAMPLE.", True)],
)  # fmt: skip
def test_matches_judges_the_host_alone(host: str, matched: bool) -> None:
    # The injector asks whether a credential's hosts include a destination: no port.
    assert POLICY.matches(canonical_host(host)) is matched


def test_an_empty_allowlist_allows_nothing() -> None:
    decision = EgressPolicy([]).check(canonical_host("api.example.com"), 443)
    assert decision.reason == "no-allowlist"


@pytest.mark.parametrize(
    ("hosts", "ports"),
    [(["*.com"], [443]), (["*"], [443]), (["1.2.3.4"], [443]), (["host:443"], [443]),
     (["host/path"], [443]), (["*.*.example.com"], [443]), (["a.*.example.com"], [443]),
     (["ok.example", "bad_entry.example"], [443]), (["[::1]"], [443]), ([""], [443]),
     (["ok.example"], [0]), (["ok.example"], [65536]), (["ok.example"], [True]),
     (["ok.example"], [443, -1])],
)  # fmt: skip
def test_attack_bad_policies_are_refused_when_built(hosts: list[str], ports: list[int]) -> None:
    with pytest.raises(HostError):
        EgressPolicy(hosts, ports)


@pytest.mark.parametrize(
    "entry",
    ["*.com", "*", "*.", "1.2.3.4", "host:443", "host/path", "a.*.example.com", "bad_entry"],
)
def test_a_bad_entry_is_named_in_the_error(entry: str) -> None:
    with pytest.raises(HostError) as info:
        EgressPolicy(["ok.example", entry])
    assert repr(entry) in str(info.value)


def test_duplicate_and_equivalent_entries_collapse() -> None:
    policy = EgressPolicy(["API.example.com", "api.example.com.", "*.svc.example.com"], [443, 443])
    assert repr(policy) == "EgressPolicy(['api.example.com', '*.svc.example.com'], ports=[443])"
