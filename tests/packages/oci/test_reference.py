"""Image references and pinned digests: what is accepted, and why the rest is refused."""

from __future__ import annotations

import pytest

from gigmcp.packages.oci.errors import BadReference
from gigmcp.packages.oci.pull import entrypoint_path
from gigmcp.packages.oci.reference import ImageRef, digest_hex, parse_digest, parse_reference

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghcr.io/gigmcp/hackernews-mcp", ImageRef("ghcr.io", None, "gigmcp/hackernews-mcp", None)),
        ("ghcr.io/gigmcp/x:v1.2.3", ImageRef("ghcr.io", None, "gigmcp/x", "v1.2.3")),
        ("127.0.0.1:5000/a/b/c", ImageRef("127.0.0.1", 5000, "a/b/c", None)),
        ("localhost:5000/name:latest", ImageRef("localhost", 5000, "name", "latest")),
        ("localhost/name", ImageRef("localhost", None, "name", None)),
        ("[::1]:5000/a__b/c.d-e", ImageRef("[::1]", 5000, "a__b/c.d-e", None)),
        ("registry.example.com:443/o/n_m", ImageRef("registry.example.com", 443, "o/n_m", None)),
    ],
)
def test_valid_references_parse(ref: str, expected: ImageRef) -> None:
    parsed = parse_reference(ref)
    assert parsed == expected
    assert str(parsed) == ref


def test_registry_is_host_and_port() -> None:
    assert parse_reference("127.0.0.1:5000/a").registry == "127.0.0.1:5000"
    assert parse_reference("ghcr.io/a").registry == "ghcr.io"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "empty"),
        ("user:secret@ghcr.io/o/n", "must not carry credentials"),
        ("user@ghcr.io/o/n", "must not carry credentials"),
        (f"ghcr.io/o/n@sha256:{HEX}", "the digest is pinned separately"),
        ("https://ghcr.io/o/n", "must not have a scheme"),
        ("ghcr.io/Owner/name", "repository path must be lowercase"),
        ("GHCR.io/o/n", "registry host must be lowercase"),
        ("ghcr.io/o/n m", "bad characters"),
        ("ghcr.io/o/n\n", "bad characters"),
        ("ghcr.io/o/ñ", "bad characters"),
        ("owner/name", "needs a registry host"),
        ("ubuntu", "needs a registry host and a path"),
        ("ghcr.io/", "needs a registry host and a path"),
        ("ghcr.io/o//n", "invalid path component ''"),
        ("ghcr.io/o/-n", "invalid path component '-n'"),
        ("ghcr.io/o/../n", "invalid path component '..'"),
        ("ghcr.io/o/n:", "invalid tag"),
        ("ghcr.io/o/n:-bad", "invalid tag"),
        ("ghcr.io:99999/o/n", "invalid registry port"),
        ("ghcr.io:0/o/n", "invalid registry port"),
        ("gh_cr.io/o/n", "invalid registry host"),
        ("-ghcr.io/o/n", "invalid registry host"),
        ("[::1/o/n", "unterminated IPv6"),
        ("[zz::1]:5000/o/n", "invalid IPv6"),
        ("ghcr.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_bad_references_are_refused_with_a_reason(ref: str, message: str) -> None:
    with pytest.raises(BadReference, match=message):
        parse_reference(ref)


def test_credentials_never_appear_in_the_error() -> None:
    with pytest.raises(BadReference) as info:
        parse_reference("robot:hunter2@ghcr.io/o/n")
    assert "hunter2" not in str(info.value)


def test_digests() -> None:
    assert parse_digest(f"sha256:{HEX}") == f"sha256:{HEX}"
    assert digest_hex(f"sha256:{HEX}") == HEX
    with pytest.raises(BadReference, match="only sha256"):
        parse_digest("sha512:" + "ab" * 64)
    with pytest.raises(BadReference, match="64 lowercase hex"):
        parse_digest("sha256:" + HEX.upper())
    with pytest.raises(BadReference, match="64 lowercase hex"):
        parse_digest("sha256:" + HEX[:-1])
    with pytest.raises(BadReference, match="must look like"):
        parse_digest(HEX)
    with pytest.raises(BadReference, match="missing"):
        parse_digest("")
    with pytest.raises(BadReference, match="64 lowercase hex"):
        digest_hex("sha256:../../etc/passwd" + "a" * 40)


@pytest.mark.parametrize(
    ("entry", "ok"),
    [("/app/server", True), ("/server", True), ("app/server", False), ("/app/../etc", False),
     ("/app//server", False), ("/app/./server", False), ("/", False), ("/app/\x00", False)],
)  # fmt: skip
def test_entrypoints_are_clean_absolute_paths(entry: str, ok: bool) -> None:
    if ok:
        assert entrypoint_path(entry) == entry
    else:
        with pytest.raises(BadReference, match="entrypoint"):
            entrypoint_path(entry)
