"""Strict manifest parsing, with the reference's verdicts and values."""

from __future__ import annotations

import pytest

from gigmcp.registry.errors import ManifestError
from gigmcp.registry.hashing import canonical_json
from gigmcp.registry.manifest import LockEntry, parse_manifest
from tests.support.registry_samples import (
    GOOD_YAML,
    PACKAGE_YAML,
    VECTOR_ONE_JSON,
    VECTOR_ONE_YAML,
    VECTOR_THREE_JSON,
    VECTOR_THREE_YAML,
    VECTOR_TWO_JSON,
    VECTOR_TWO_YAML,
)


def parse_error(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text.encode())
    return info.value


def test_parses_the_good_manifest() -> None:
    m = parse_manifest(GOOD_YAML.encode())
    assert (m.schema_version, m.name, m.version, m.tier) == (1, "chat-mcp", "1.4.2", "sealed")
    assert m.image.entrypoint == "/server"
    assert m.entitlements.egress == ("chat.example.com", "*.chat.example.com")
    assert m.credentials[0].inject.header == "Authorization"
    assert m.credentials[0].scopes == ("messages:write",)
    assert [(t.name, t.default) for t in m.tools] == [
        ("send_message", True),
        ("admin_settings", False),
    ]
    assert m.packages == ()


@pytest.mark.parametrize(
    ("yaml_text", "json_text"),
    [
        (VECTOR_ONE_YAML, VECTOR_ONE_JSON),
        (VECTOR_TWO_YAML, VECTOR_TWO_JSON),
        (VECTOR_THREE_YAML, VECTOR_THREE_JSON),
    ],
    ids=["escaping", "scalar-conversions", "empty-lists"],
)
def test_parses_to_the_value_the_reference_parses_to(yaml_text: str, json_text: str) -> None:
    # json_text is the reference's json.Marshal of its own parse of yaml_text.
    assert canonical_json(parse_manifest(yaml_text.encode())) == json_text.encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_YAML + "surprise: field\n", "surprise: unknown field"),
        (
            GOOD_YAML.replace("source:\n", "source:\n  surprise: nested\n"),
            "source.surprise: unknown field",
        ),
        (
            GOOD_YAML.replace("    default: true", "    defualt: true"),
            "tools[0].defualt: unknown field",
        ),
        (
            GOOD_YAML.replace("      format:", "      fromat:"),
            "credentials[0].inject.fromat: unknown field",
        ),
        (
            GOOD_YAML.replace("entitlements:", "Entitlements:"),
            "Entitlements: unknown field (field names are case-sensitive: 'entitlements')",
        ),
        (
            GOOD_YAML.replace("schemaVersion: 1", 'schemaVersion: "1"'),
            "schemaVersion: expected an integer, got a string",
        ),
        (
            GOOD_YAML.replace("schemaVersion: 1", "schemaVersion: 1.5"),
            "schemaVersion: expected an integer, got 1.5",
        ),
        (
            GOOD_YAML.replace("schemaVersion: 1", "schemaVersion: 9223372036854775808"),
            "schemaVersion: integer 9223372036854775808 out of range",
        ),
        (
            GOOD_YAML.replace("default: true", 'default: "true"'),
            "tools[0].default: expected a boolean, got a string",
        ),
        (
            GOOD_YAML.replace(
                '    - chat.example.com\n    - "*.chat.example.com"', "    chat.example.com"
            ),
            "entitlements.egress: expected a list, got a string",
        ),
        (
            GOOD_YAML.replace("name: chat-mcp", "name: [chat]"),
            "name: expected a string, got a list",
        ),
        ("- a\n- b\n", "(document): expected a mapping, got a list"),
        (
            GOOD_YAML + "packages:\n  - registryType: npm\n    integrty: x\n",
            "packages[0].integrty: unknown field",
        ),
    ],
)
def test_refusals_name_the_field(text: str, message: str) -> None:
    err = parse_error(text)
    assert message in err.problems
    assert str(err).startswith("parse manifest: ")


def test_every_problem_is_reported() -> None:
    text = GOOD_YAML + "surprise: 1\nother: 2\n"
    text = text.replace("schemaVersion: 1", "schemaVersion: x")
    err = parse_error(text)
    assert err.problems == (
        "schemaVersion: expected an integer, got a string",
        "surprise: unknown field",
        "other: unknown field",
    )
    assert "3 problems" in str(err)


def test_yaml_syntax_errors_are_manifest_errors() -> None:
    err = parse_error("{[not yaml")
    assert str(err).startswith("parse manifest: ")
    assert "duplicate key 'name'" in str(parse_error(GOOD_YAML + "name: again\n"))


def test_null_and_absent_fields_are_zero_values() -> None:
    m = parse_manifest(b"name: x\nsource:\nimage: ~\ntools:\n  - null\n")
    assert m.source.repo == "" and m.image.digest == ""
    assert m.tools[0].name == "" and m.tools[0].default is False
    assert parse_manifest(b"").name == ""


def test_packages_extension_parses() -> None:
    m = parse_manifest(PACKAGE_YAML.encode())
    (package,) = m.packages
    assert package.registry_type == "pypi"
    assert package.version == "2025.1.14"  # a plain scalar that is not a number
    assert package.package_arguments == ("--local-timezone", "UTC")
    assert package.lock == (LockEntry("tzdata", "2025.2", "sha256:" + "c" * 64),)
    assert m.image.is_empty


def test_lock_absent_and_empty_differ() -> None:
    base = PACKAGE_YAML.split("    lock:")[0]
    assert parse_manifest(base.encode()).packages[0].lock is None
    assert parse_manifest((base + "    lock: []\n").encode()).packages[0].lock == ()
