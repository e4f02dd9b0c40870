"""Building, parsing and resolving the index, byte-compatible with the reference."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gigmcp.registry.errors import ManifestError, ManifestResolveError, RegistryIndexError
from gigmcp.registry.index import build_index, parse_index, parse_rfc3339
from gigmcp.registry.manifest import Manifest, parse_manifest
from gigmcp.registry.toolspec import ToolSpec, to_json
from tests.support.registry_samples import (
    SMALL_INDEX_GENERATED,
    SMALL_INDEX_LENGTH,
    SMALL_INDEX_SHA256,
    VECTOR_ONE_YAML,
    VECTOR_THREE_YAML,
    good,
    good_spec,
    package_manifest,
    replace,
)

STAMP = "2026-06-06T00:00:00Z"


def vectors() -> list[Manifest]:
    one = parse_manifest(VECTOR_ONE_YAML.encode())
    return [one, replace(one, version="2.9.0"), parse_manifest(VECTOR_THREE_YAML.encode())]


def test_bytes_equal_the_reference() -> None:
    raw = build_index(vectors(), SMALL_INDEX_GENERATED)
    assert len(raw) == SMALL_INDEX_LENGTH
    assert hashlib.sha256(raw).hexdigest() == SMALL_INDEX_SHA256
    # Input order does not matter; latest is by semver (2.10.3 > 2.9.0), not text.
    assert build_index(reversed(vectors()), SMALL_INDEX_GENERATED) == raw
    assert json.loads(raw)["servers"]["vector-one"]["latest"] == "2.10.3"


def test_generated_accepts_a_datetime() -> None:
    moment = datetime(2026, 6, 6, 14, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    assert build_index(vectors(), moment) == build_index(vectors(), SMALL_INDEX_GENERATED)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_index(vectors(), datetime(2026, 1, 1))
    with pytest.raises(
        RegistryIndexError, match="generated: 'yesterday' is not an RFC 3339 timestamp"
    ):
        build_index(vectors(), "yesterday")


def test_build_refuses_invalid_and_duplicate_manifests() -> None:
    with pytest.raises(RegistryIndexError, match="duplicate manifest chat-mcp@1.4.2"):
        build_index([good(), good()], STAMP)
    with pytest.raises(ManifestError, match="manifest chat-mcp@1.4.2: tier 'x' invalid"):
        build_index([replace(good(), tier="x")], STAMP)


def test_round_trip_and_resolve() -> None:
    a = good()
    b = replace(good(), version="1.10.0", image=replace(good().image, digest="sha256:" + "b" * 64))
    c = package_manifest()
    index = parse_index(build_index([a, b, c], STAMP))
    assert index.generated == STAMP
    assert index.generated_at == datetime(2026, 6, 6, tzinfo=UTC)
    assert index.resolve("chat-mcp") == b
    assert index.resolve("chat-mcp@1.4.2") == a
    assert index.resolve("sha256:" + "b" * 64) == b
    assert index.resolve("time-mcp") == c
    assert [m.ref for m in index.manifests()] == [
        "chat-mcp@1.4.2",
        "chat-mcp@1.10.0",
        "time-mcp@0.6.0",
    ]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "empty ref: use name, name@version or sha256:<digest>"),
        ("nope", "unknown server 'nope'"),
        ("chat-mcp@9.9.9", "unknown version chat-mcp@9.9.9"),
        ("chat-mcp@", "malformed ref 'chat-mcp@' (trailing @)"),
        ("@1.4.2", "malformed ref '@1.4.2' (no server name)"),
        ("sha256:" + "c" * 64, "no manifest pins image digest sha256:" + "c" * 64),
        ("sha256:short", "malformed digest ref 'sha256:short': sha256:<64 lowercase hex>"),
    ],
)
def test_resolve_errors(ref: str, message: str) -> None:
    index = parse_index(build_index([good()], STAMP))
    with pytest.raises(ManifestResolveError) as info:
        index.resolve(ref)
    assert str(info.value) == message
    assert isinstance(info.value, LookupError)


def test_ambiguous_digest_is_an_error() -> None:
    twin = replace(good(), name="chat-twin")
    index = parse_index(build_index([good(), twin], STAMP))
    with pytest.raises(
        ManifestResolveError,
        match="ambiguous digest .* pinned by chat-mcp@1.4.2, chat-twin@1.4.2; use name@version",
    ):
        index.resolve(good().image.digest)


def mangle(edit: Callable[[dict[str, Any]], object]) -> bytes:
    doc = json.loads(build_index([good()], STAMP))
    edit(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff", "index is not UTF-8"),
        (b"{", "index is not JSON"),
        (b"[]", "index: expected an object"),
        (mangle(lambda d: d.update(extra=1)), "index: unknown field 'extra'"),
        (mangle(lambda d: d.pop("generated")), "index: missing field 'generated'"),
        (mangle(lambda d: d.update(schemaVersion=2)), "index schemaVersion must be 1, got 2"),
        (mangle(lambda d: d.update(schemaVersion=True)), "index schemaVersion must be 1, got True"),
        (
            mangle(lambda d: d.update(generated="2026-06-06")),
            "index generated: '2026-06-06' is not an RFC 3339 timestamp",
        ),
        (
            mangle(lambda d: d.update(generated="2026-02-30T00:00:00Z")),
            "is not a valid date and time",
        ),
        (mangle(lambda d: d.update(servers=[])), "index servers: expected an object"),
        (
            mangle(lambda d: d["servers"]["chat-mcp"].update(latest="9.9.9")),
            "servers['chat-mcp'].latest '9.9.9' is not one of its versions",
        ),
        (
            mangle(lambda d: d["servers"]["chat-mcp"].update(versions={})),
            "servers['chat-mcp'].versions: expected a non-empty object",
        ),
        (
            mangle(lambda d: d["servers"]["chat-mcp"].update(mirror=True)),
            "servers['chat-mcp']: unknown field 'mirror'",
        ),
        (
            mangle(lambda d: d["servers"].update({"trusted": d["servers"]["chat-mcp"]})),
            "servers['trusted'].versions['1.4.2']: holds manifest chat-mcp@1.4.2",
        ),
        (
            mangle(lambda d: d["servers"]["chat-mcp"]["versions"]["1.4.2"].update(tier="open")),
            "tier 'open' invalid",
        ),
        (
            mangle(lambda d: d["servers"]["chat-mcp"]["versions"]["1.4.2"].update(egres=[])),
            "egres: unknown field",
        ),
        # JSON keeps its types: no YAML-style conversion of a number into a string.
        (
            mangle(lambda d: d["servers"]["chat-mcp"]["versions"]["1.4.2"].update(version=1)),
            "version: expected a string, got a number",
        ),
        (
            mangle(
                lambda d: d["servers"]["chat-mcp"]["versions"]["1.4.2"].update(schemaVersion=1.0)
            ),
            "schemaVersion: expected an integer, got 1.0",
        ),
        (
            b'{"schemaVersion":1,"schemaVersion":1,"generated":"x","servers":{}}',
            "duplicate key 'schemaVersion'",
        ),
        (b'{"schemaVersion":NaN,"generated":"x","servers":{}}', "NaN is not JSON"),
    ],
)
def test_parse_is_strict(raw: bytes, message: str) -> None:
    with pytest.raises(RegistryIndexError) as info:
        parse_index(raw)
    assert message in str(info.value)


def test_rfc3339_forms() -> None:
    assert parse_rfc3339("2026-06-06T02:00:00+02:00") == datetime(2026, 6, 6, tzinfo=UTC)
    assert parse_rfc3339("2026-06-06t00:00:00.123456789z").microsecond == 123456
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_rfc3339("2026-06-06T00:00:00")  # no offset


# --- toolspecs carried in the index (extension) ---------------------------------------


def test_toolspecs_travel_in_the_index() -> None:
    spec = good_spec()
    raw = build_index([good()], STAMP, [spec])
    assert raw.startswith(build_index([good()], STAMP)[:-3])  # same prefix, entry extended
    entry = json.loads(raw)["servers"]["chat-mcp"]
    assert list(entry) == ["latest", "versions", "toolspecs"]
    index = parse_index(raw)
    assert index.toolspec_of(good()) == spec
    assert index.toolspec(good()) == to_json(spec)
    assert index.toolspec(replace(good(), version="9.9.9")) is None
    assert parse_index(build_index([good()], STAMP)).toolspec(good()) is None


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            [replace(good_spec(), version="2.0.0")],
            "toolspec chat-mcp@2.0.0: no manifest of that name and version",
        ),
        ([good_spec(), good_spec()], "duplicate toolspec chat-mcp@1.4.2"),
        (
            [replace(good_spec(), tools=good_spec().tools[:1])],
            "manifest tool 'admin_settings' missing from toolspec",
        ),
        ([replace(good_spec(), base_url="http://chat.example.com")], "scheme must be https"),
    ],
)
def test_build_refuses_bad_toolspecs(specs: list[ToolSpec], message: str) -> None:
    with pytest.raises(RegistryIndexError, match=re.escape(message)):
        build_index([good()], STAMP, specs)


def with_spec(edit: Callable[[dict[str, Any]], object]) -> bytes:
    doc = json.loads(build_index([good()], STAMP, [good_spec()]))
    edit(doc["servers"]["chat-mcp"]["toolspecs"])
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            with_spec(lambda t: t.update({"9.9.9": t["1.4.2"]})),
            "servers['chat-mcp'].toolspecs['9.9.9']: no manifest of that version",
        ),
        (
            with_spec(lambda t: t.clear()),
            "servers['chat-mcp'].toolspecs: expected a non-empty object",
        ),
        (with_spec(lambda t: t["1.4.2"].update(metod="GET")), "metod: unknown field"),
        (
            with_spec(lambda t: t["1.4.2"].update(baseUrl="https://evil.com")),
            "base URL host 'evil.com' not allowed by manifest egress",
        ),
        (
            with_spec(lambda t: t["1.4.2"].update(name="other")),
            "toolspec other@1.4.2 does not match manifest chat-mcp@1.4.2",
        ),
        (
            with_spec(lambda t: t["1.4.2"]["tools"][0].update(method="YEET")),
            "method 'YEET' invalid",
        ),
        (
            with_spec(lambda t: t["1.4.2"].update(schemaVersion="1")),
            "schemaVersion: expected an integer, got a string",
        ),
    ],
)
def test_parse_checks_carried_toolspecs(raw: bytes, message: str) -> None:
    with pytest.raises(RegistryIndexError) as info:
        parse_index(raw)
    assert message in str(info.value)
