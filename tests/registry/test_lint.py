"""Egress entry shape, the proxy's matching, and the denylist policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigmcp.registry.egress_rules import check_egress_entry, egress_allows
from gigmcp.registry.lint import Denylist, Finding, lint_manifest
from gigmcp.registry.manifest import Entitlements, Manifest
from tests.support.registry_samples import good, replace

DENY = Denylist.from_lines(
    [
        "# exfil domains",
        "",
        "  Pastebin.com  ",
        "webhook.site",
        "ngrok.io",
        "metadata.example.internal",
    ]
)


@pytest.mark.parametrize(
    "entry",
    [
        "chat.example.com",
        "*.chat.example.com",
        "api.github.com",
        "*.s3.us-east-1.amazonaws.com",
        "xn--bcher-kva.example",
    ],
)
def test_valid_egress_entries(entry: str) -> None:
    assert check_egress_entry(entry) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("*", "egress '*': bare or embedded wildcard not allowed"),
        (
            "*.com",
            "egress '*.com': wildcard suffix must keep at least two labels (*.com is too broad)",
        ),
        ("foo.*.com", "bare or embedded wildcard not allowed"),
        ("**.example.com", "bare or embedded wildcard not allowed"),
        ("chat.example.com:443", "egress 'chat.example.com:443': ports and paths not allowed"),
        ("chat.example.com/path", "ports and paths not allowed"),
        ("https://chat.example.com", "egress 'https://chat.example.com': a scheme is not allowed"),
        ("10.0.0.1", "egress '10.0.0.1': raw IP literals not allowed"),
        ("*.10.0.0.1", "raw IP literals not allowed"),
        ("[::1]", "ports and paths not allowed"),
        ("", "egress '': invalid label ''"),
        ("UPPER.com", "invalid label 'UPPER'"),
        ("-bad.com", "invalid label '-bad'"),
        ("bad-.com", "invalid label 'bad-'"),
        ("a..com", "invalid label ''"),
        ("under_score.com", "invalid label 'under_score'"),
        ("host.com.", "invalid label ''"),
    ],
)
def test_refused_egress_entries(entry: str, message: str) -> None:
    reason = check_egress_entry(entry)
    assert reason is not None and message in reason


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.example.com", True),
        ("API.Example.com", True),
        ("sub.example.com", False),
        ("chat.com", False),  # *.chat.com matches true subdomains only
        ("a.b.chat.com", True),
        ("evilchat.com", False),
        ("chat.com.evil.x", False),
    ],
)
def test_egress_allows_has_the_proxy_semantics(host: str, allowed: bool) -> None:
    assert egress_allows(["api.example.com", "*.chat.com"], host) is allowed


def with_egress(*entries: str) -> Manifest:
    return replace(good(), entitlements=Entitlements(egress=entries))


def test_clean_manifest_lints_clean() -> None:
    assert lint_manifest(good(), DENY) == []


@pytest.mark.parametrize(
    ("entry", "finding"),
    [
        (
            "pastebin.com",
            Finding("denylist", "egress 'pastebin.com' matches denylist entry 'pastebin.com'"),
        ),
        (
            "api.pastebin.com",
            Finding("denylist", "egress 'api.pastebin.com' matches denylist entry 'pastebin.com'"),
        ),
        (
            "*.ngrok.io",
            Finding("denylist", "egress '*.ngrok.io' matches denylist entry 'ngrok.io'"),
        ),
        (
            "*.example.internal",
            Finding(
                "wildcard-covers-denylisted",
                "egress '*.example.internal' allows denylisted metadata.example.internal",
            ),
        ),
        ("10.1", Finding("ip-notation", "egress '10.1': resolves as an IPv4 address, not a name")),
        (
            "0x7f000001",
            Finding("ip-notation", "egress '0x7f000001': resolves as an IPv4 address, not a name"),
        ),
    ],
)
def test_policy_findings(entry: str, finding: Finding) -> None:
    assert lint_manifest(with_egress("chat.example.com", entry), DENY) == [finding]


def test_not_a_subdomain_is_not_denied() -> None:
    assert lint_manifest(with_egress("notpastebin.com", "webhook.site.example.com"), DENY) == []


def test_lint_includes_validation_problems() -> None:
    findings = lint_manifest(replace(with_egress("Bad.com"), tier="x"), DENY)
    assert [f.rule for f in findings] == ["schema", "schema"]
    assert "tier 'x' invalid" in findings[0].message


def test_denylist_file_format(tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    path.write_text("# comment\n\nPastebin.COM\n  ngrok.io  \r\n# localhost\n", encoding="utf-8")
    assert Denylist.load(path).domains == ("pastebin.com", "ngrok.io")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        Denylist.load(path)
    path.write_bytes(b"a" * (1 << 20) + b"\n")
    with pytest.raises(ValueError, match="larger than"):
        Denylist.load(path)
