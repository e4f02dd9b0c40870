"""Manifest and runtime hashes: the reference's exact values, and what moves them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gigmcp.registry.hashing import canonical_json, manifest_hash, runtime_hash
from gigmcp.registry.manifest import (
    Credential,
    Entitlements,
    Inject,
    Manifest,
    Tool,
    parse_manifest,
)
from tests.support.registry_samples import (
    PACKAGE_YAML,
    VECTOR_ONE_HASH,
    VECTOR_ONE_RUNTIME,
    VECTOR_ONE_YAML,
    VECTOR_THREE_HASH,
    VECTOR_THREE_RUNTIME,
    VECTOR_THREE_YAML,
    VECTOR_TWO_HASH,
    VECTOR_TWO_RUNTIME,
    VECTOR_TWO_YAML,
    good,
    replace,
)


@pytest.mark.parametrize(
    ("yaml_text", "full", "runtime"),
    [
        (VECTOR_ONE_YAML, VECTOR_ONE_HASH, VECTOR_ONE_RUNTIME),
        (VECTOR_TWO_YAML, VECTOR_TWO_HASH, VECTOR_TWO_RUNTIME),
        (VECTOR_THREE_YAML, VECTOR_THREE_HASH, VECTOR_THREE_RUNTIME),
    ],
    ids=["escaping", "scalar-conversions", "empty-lists"],
)
def test_hashes_equal_the_reference(yaml_text: str, full: str, runtime: str) -> None:
    m = parse_manifest(yaml_text.encode())
    assert manifest_hash(m) == full
    assert runtime_hash(m) == runtime


def test_yaml_formatting_does_not_move_the_hash() -> None:
    flow = parse_manifest(
        b"{schemaVersion: 1, name: vector-three, version: 0.1.0, tier: sealed,"
        b" source: {tag: t, repo: r}, image: {entrypoint: /e, ref: x,"
        b' digest: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}'
    )
    assert manifest_hash(flow) == VECTOR_THREE_HASH


def base() -> Manifest:
    m = good()
    return replace(
        m,
        image=replace(m.image, builder="toolpack"),
        credentials=(
            Credential(
                id="chat_oauth",
                type="oauth2",
                provider="chat",
                scopes=("messages:read",),
                inject=Inject(header="Authorization", format="Bearer {token}"),
            ),
        ),
    )


def cred(m: Manifest, **changes: object) -> Manifest:
    return replace(m, credentials=(replace(m.credentials[0], **changes),))


RUNTIME_FIELDS: dict[str, Callable[[Manifest], Manifest]] = {
    "name": lambda m: replace(m, name="other"),
    "version": lambda m: replace(m, version="0.2.0"),
    "schemaVersion": lambda m: replace(m, schema_version=2),
    "source.repo": lambda m: replace(m, source=replace(m.source, repo="github.com/evil/x")),
    "source.tag": lambda m: replace(m, source=replace(m.source, tag="v9.9.9")),
    "source.package": lambda m: replace(m, source=replace(m.source, package="cmd")),
    "image.ref": lambda m: replace(m, image=replace(m.image, ref="ghcr.io/evil/x")),
    "image.entrypoint": lambda m: replace(m, image=replace(m.image, entrypoint="/app/evil")),
    "image.builder": lambda m: replace(m, image=replace(m.image, builder="go-static")),
    "tier": lambda m: replace(m, tier="entrusted"),
    "egress": lambda m: replace(m, entitlements=Entitlements(egress=("evil.example.com",))),
    "cred.id": lambda m: cred(m, id="x"),
    "cred.type": lambda m: cred(m, type="api_key"),
    "cred.provider": lambda m: cred(m, provider="evil"),
    "cred.scopes": lambda m: cred(m, scopes=("admin",)),
    "cred.inject": lambda m: cred(m, inject=Inject(header="X-Evil", format="{token}")),
    "tool.name": lambda m: replace(m, tools=(Tool("evil_tool", True),)),
    "tool.default": lambda m: replace(m, tools=(Tool("send_message", False),)),
}

PRESENTATION_FIELDS: dict[str, Callable[[Manifest], Manifest]] = {
    "image.digest": lambda m: replace(m, image=replace(m.image, digest="sha256:" + "d" * 64)),
    "cred.vendor": lambda m: cred(m, vendor="google"),
    "displayName": lambda m: replace(m, display_name="Chat"),
    "description": lambda m: replace(m, description="x"),
    "category": lambda m: replace(m, category="comms"),
    "icon": lambda m: replace(m, icon="icons/chat.svg"),
}


@pytest.mark.parametrize("field", list(RUNTIME_FIELDS))
def test_runtime_fields_move_both_hashes(field: str) -> None:
    changed = RUNTIME_FIELDS[field](base())
    assert runtime_hash(changed) != runtime_hash(base())
    assert manifest_hash(changed) != manifest_hash(base())


@pytest.mark.parametrize("field", list(PRESENTATION_FIELDS))
def test_presentation_fields_move_only_the_full_hash(field: str) -> None:
    changed = PRESENTATION_FIELDS[field](base())
    assert runtime_hash(changed) == runtime_hash(base())
    assert manifest_hash(changed) != manifest_hash(base())


def test_backfilled_presentation_keeps_the_runtime_hash() -> None:
    baked = base()
    index = base()
    for mutate in PRESENTATION_FIELDS.values():
        index = mutate(index)
    assert runtime_hash(index) == runtime_hash(baked)


def test_runtime_hash_does_not_mutate() -> None:
    m = cred(replace(base(), display_name="Chat"), vendor="google")
    before = canonical_json(m)
    runtime_hash(m)
    assert canonical_json(m) == before
    assert m.credentials[0].vendor == "google"


def test_packages_are_hashed_only_when_present() -> None:
    m = parse_manifest(PACKAGE_YAML.encode())
    assert b'"packages":[{"registryType":"pypi"' in canonical_json(m)
    assert b"packages" not in canonical_json(good())
    package = m.packages[0]
    for changed in (
        replace(package, integrity="sha256:" + "e" * 64),
        replace(package, version="2025.1.15"),
        replace(package, package_arguments=()),
        replace(package, lock=None),
        replace(package, lock=()),
    ):
        assert runtime_hash(replace(m, packages=(changed,))) != runtime_hash(m)
    # An empty lock ("no dependencies") and no lock at all never hash alike.
    no_lock = replace(m, packages=(replace(package, lock=None),))
    empty_lock = replace(m, packages=(replace(package, lock=()),))
    assert runtime_hash(no_lock) != runtime_hash(empty_lock)
    assert b'"lock":[]' in canonical_json(empty_lock)
