"""Every structural rule of the reference: a valid manifest, then one mutation per rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gigmcp.registry.errors import ManifestError
from gigmcp.registry.manifest import Credential, Inject, Manifest, Tool
from gigmcp.registry.validate import CATEGORIES, manifest_problems, validate_manifest
from tests.support.registry_samples import good, replace


def with_image(m: Manifest, **changes: str) -> Manifest:
    return replace(m, image=replace(m.image, **changes))


def with_source(m: Manifest, **changes: str) -> Manifest:
    return replace(m, source=replace(m.source, **changes))


def with_cred(m: Manifest, **changes: object) -> Manifest:
    return replace(m, credentials=(replace(m.credentials[0], **changes),))


def test_good_manifest_validates() -> None:
    validate_manifest(good())
    assert manifest_problems(good()) == []


RULES: list[tuple[str, Callable[[Manifest], Manifest], str]] = [
    ("schemaVersion", lambda m: replace(m, schema_version=2), "schemaVersion must be 1, got 2"),
    (
        "underscore name",
        lambda m: replace(m, name="chat_mcp"),
        "name 'chat_mcp' invalid: lowercase [a-z0-9-], no underscores",
    ),
    ("uppercase name", lambda m: replace(m, name="Chat"), "name 'Chat' invalid"),
    ("name with newline", lambda m: replace(m, name="chat\n"), "name 'chat\\n' invalid"),
    ("name edge hyphen", lambda m: replace(m, name="chat-"), "name 'chat-' invalid"),
    (
        "short version",
        lambda m: replace(m, version="1.4"),
        "version '1.4' invalid: must be MAJOR.MINOR.PATCH",
    ),
    ("leading zero version", lambda m: replace(m, version="01.4.2"), "version '01.4.2' invalid"),
    (
        "prerelease version",
        lambda m: replace(m, version="1.4.2-rc1"),
        "version '1.4.2-rc1' invalid",
    ),
    (
        "missing source.repo",
        lambda m: with_source(m, repo=""),
        "source.repo and source.tag are required",
    ),
    (
        "missing source.tag",
        lambda m: with_source(m, tag=""),
        "source.repo and source.tag are required",
    ),
    (
        "dotdot package",
        lambda m: with_source(m, package="../evil"),
        "source.package '../evil' invalid: must not contain '..'",
    ),
    (
        "absolute package",
        lambda m: with_source(m, package="/etc"),
        "source.package '/etc' invalid: must not be an absolute path",
    ),
    (
        "odd package chars",
        lambda m: with_source(m, package="a b"),
        "source.package 'a b' invalid: must match",
    ),
    ("missing image.ref", lambda m: with_image(m, ref=""), "image.ref is required"),
    (
        "short digest",
        lambda m: with_image(m, digest="sha256:short"),
        "image.digest 'sha256:short' invalid: must be sha256:<64 hex>",
    ),
    ("uppercase digest", lambda m: with_image(m, digest="sha256:" + "A" * 64), "image.digest"),
    (
        "relative entrypoint",
        lambda m: with_image(m, entrypoint="server"),
        "image.entrypoint 'server' must be an absolute path",
    ),
    ("unknown builder", lambda m: with_image(m, builder="ruby"), "image.builder 'ruby' invalid"),
    (
        "bad tier",
        lambda m: replace(m, tier="yolo"),
        "tier 'yolo' invalid: must be 'sealed' or 'entrusted'",
    ),
    (
        "bad egress",
        lambda m: replace(m, entitlements=replace(m.entitlements, egress=("Chat.example.com",))),
        "egress 'Chat.example.com': invalid label 'Chat'",
    ),
    (
        "sealed with env",
        lambda m: with_cred(m, inject=Inject(env="TOKEN")),
        "credential 'chat_token': sealed tier requires inject.header + inject.format containing {token}, and no inject.env",
    ),
    (
        "format without token",
        lambda m: with_cred(m, inject=Inject(header="Authorization", format="Bearer x")),
        "sealed tier requires",
    ),
    (
        "sealed with header and env",
        lambda m: with_cred(m, inject=Inject(header="A", format="{token}", env="X")),
        "sealed tier requires",
    ),
    (
        "entrusted with header",
        lambda m: replace(m, tier="entrusted"),
        "credential 'chat_token': entrusted tier requires inject.env only",
    ),
    (
        "duplicate credential",
        lambda m: replace(m, credentials=m.credentials * 2),
        "credential id 'chat_token' empty or duplicate",
    ),
    ("empty credential id", lambda m: with_cred(m, id=""), "credential id '' empty or duplicate"),
    (
        "oauth2 without vendor",
        lambda m: with_cred(m, type="oauth2"),
        "credential 'chat_token': vendor is required for oauth2",
    ),
    (
        "bad vendor",
        lambda m: with_cred(m, vendor="Google_Inc"),
        "credential 'chat_token': vendor 'Google_Inc' invalid: lowercase slug [a-z0-9-]",
    ),
    (
        "bad category",
        lambda m: replace(m, category="news"),
        "category 'news' invalid: must be one of ai, analytics",
    ),
    (
        "duplicate tool",
        lambda m: replace(m, tools=m.tools + m.tools[:1]),
        "tool name 'send_message' empty or duplicate",
    ),
    (
        "empty tool name",
        lambda m: replace(m, tools=(Tool(name=""),)),
        "tool name '' empty or duplicate",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_refuses_with_a_clear_message(
    mutate: Callable[[Manifest], Manifest], message: str
) -> None:
    m = mutate(good())
    problems = manifest_problems(m)
    assert any(message in p for p in problems), problems
    with pytest.raises(ManifestError) as info:
        validate_manifest(m)
    assert any(message in p for p in info.value.problems)


def test_all_problems_are_reported_at_once() -> None:
    m = replace(good(), schema_version=3, name="Bad_Name", tier="open")
    with pytest.raises(ManifestError) as info:
        validate_manifest(m)
    assert len(info.value.problems) == 3
    assert str(info.value).startswith("manifest Bad_Name@1.4.2: 3 problems:")


def test_accepted_variants() -> None:
    oauth = with_cred(good(), type="oauth2", vendor="google")
    assert manifest_problems(oauth) == []
    for category in ("", *CATEGORIES):
        assert manifest_problems(replace(good(), category=category)) == [], category
    for builder in ("", "go-static", "node", "python", "toolpack"):
        assert manifest_problems(with_image(good(), builder=builder)) == [], builder
    assert manifest_problems(with_source(good(), package="examples/chat-mcp")) == []
    entrusted = replace(
        good(),
        tier="entrusted",
        credentials=(Credential(id="t", type="api_key", inject=Inject(env="TOKEN")),),
    )
    assert manifest_problems(entrusted) == []
    # A manifest without credentials or tools is valid.
    assert manifest_problems(replace(good(), credentials=(), tools=())) == []
