"""Toolspec parsing, every rule, the pairing with its manifest, and the engine JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gigmcp.registry.errors import ToolSpecError
from gigmcp.registry.manifest import Credential, Inject, parse_manifest
from gigmcp.registry.toolspec import (
    SpecTool,
    check_against_manifest,
    pairing_problems,
    parse_toolspec,
    to_json,
    toolspec_problems,
    validate_toolspec,
)
from tests.support.registry_samples import GOOD_SPEC_YAML, GOOD_YAML, good, good_spec, replace

WITH_QUERY = GOOD_SPEC_YAML.replace(
    "{name: text, in: body, type: string, required: true}",
    "{name: text, in: body, type: string, required: true}\n      - {name: thread, in: query, type: string}",
)


def test_good_spec_validates_and_pairs() -> None:
    spec = good_spec()
    validate_toolspec(spec)
    check_against_manifest(spec, good())
    assert spec.tools[1].params[0].location == "path"
    assert spec.tools[1].base_url == "https://api.chat.example.com"


def test_parse_is_strict_and_names_the_field() -> None:
    with pytest.raises(ToolSpecError) as info:
        parse_toolspec((GOOD_SPEC_YAML + "surprise: field\n").encode())
    assert info.value.problems == ("surprise: unknown field",)
    with pytest.raises(ToolSpecError) as info:
        parse_toolspec(GOOD_SPEC_YAML.replace("method: POST", "metod: POST", 1).encode())
    assert info.value.problems == ("tools[0].metod: unknown field",)
    with pytest.raises(ToolSpecError) as info:
        parse_toolspec(GOOD_SPEC_YAML.replace("required: true}", "required: maybe}", 1).encode())
    assert info.value.problems == ("tools[0].params[0].required: expected a boolean, got a string",)


EDITS: list[tuple[str, Callable[[str], str], str]] = [
    (
        "http baseUrl",
        lambda y: y.replace("https://chat.example.com", "http://chat.example.com", 1),
        "baseUrl: 'http://chat.example.com': scheme must be https",
    ),
    (
        "baseUrl path",
        lambda y: y.replace("https://chat.example.com", "https://chat.example.com/api", 1),
        "must be https://<host> with no path, query, or userinfo",
    ),
    (
        "baseUrl trailing slash",
        lambda y: y.replace("https://chat.example.com", "https://chat.example.com/", 1),
        "no path",
    ),
    (
        "baseUrl empty query",
        lambda y: y.replace("https://chat.example.com", "https://chat.example.com?", 1),
        "no path",
    ),
    (
        "baseUrl userinfo",
        lambda y: y.replace("https://chat.example.com", "https://u@chat.example.com", 1),
        "no path, query, or userinfo",
    ),
    (
        "baseUrl port",
        lambda y: y.replace("https://chat.example.com", "https://chat.example.com:8443", 1),
        "host only — no port",
    ),
    (
        "baseUrl no host",
        lambda y: y.replace("https://chat.example.com", "https://", 1),
        "a host is required",
    ),
    (
        "baseUrl wildcard",
        lambda y: y.replace("https://chat.example.com", "https://*.example.com", 1),
        "a concrete host is required, not a wildcard",
    ),
    (
        "baseUrl ip",
        lambda y: y.replace("https://chat.example.com", "https://10.0.0.1", 1),
        "raw IP literals not allowed",
    ),
    (
        "baseUrl uppercase",
        lambda y: y.replace("https://chat.example.com", "https://Chat.example.com", 1),
        "invalid label 'Chat'",
    ),
    (
        "tool baseUrl",
        lambda y: y.replace("https://api.chat.example.com", "http://api.chat.example.com", 1),
        "tool 'admin_settings': baseUrl:",
    ),
    (
        "schemaVersion",
        lambda y: y.replace("schemaVersion: 1", "schemaVersion: 2", 1),
        "schemaVersion must be 1, got 2",
    ),
    ("name", lambda y: y.replace("name: chat-mcp", "name: chat_mcp", 1), "name 'chat_mcp' invalid"),
    ("version", lambda y: y.replace("version: 1.4.2", "version: 1.4", 1), "version '1.4' invalid"),
    (
        "bad method",
        lambda y: y.replace("method: POST", "method: YEET", 1),
        "tool 'send_message': method 'YEET' invalid: GET|POST|PUT|PATCH|DELETE",
    ),
    (
        "body on GET",
        lambda y: y.replace("method: POST", "method: GET", 1),
        "tool 'send_message': body param 'channel' not allowed on GET",
    ),
    (
        "body on DELETE",
        lambda y: y.replace("method: POST", "method: DELETE", 1),
        "body param 'channel' not allowed on DELETE",
    ),
    (
        "relative path",
        lambda y: y.replace("path: /api/messages", "path: api/messages", 1),
        "path 'api/messages' must be absolute",
    ),
    (
        "missing description",
        lambda y: y.replace("    description: Post a message to a channel\n", "", 1),
        "description is required",
    ),
    (
        "bad encoding",
        lambda y: y.replace(
            "    path: /api/messages\n", "    path: /api/messages\n    encoding: xml\n", 1
        ),
        "encoding 'xml' invalid: json|form",
    ),
    (
        "orphan placeholder",
        lambda y: y.replace("/api/messages", "/api/{team}/messages", 1),
        "path placeholder {team} has no in:path param",
    ),
    (
        "unused path param",
        lambda y: y.replace(
            "path: /api/workspaces/{workspace}/settings", "path: /api/workspaces/settings", 1
        ),
        "in:path param 'workspace' does not appear in path '/api/workspaces/settings'",
    ),
    (
        "optional path param",
        lambda y: y.replace(
            "{name: workspace, in: path, type: string, required: true}",
            "{name: workspace, in: path, type: string}",
            1,
        ),
        "path param 'workspace' must be required",
    ),
    (
        "bad in",
        lambda y: WITH_QUERY.replace("in: query", "in: cookie", 1),
        "param 'thread': in 'cookie' invalid: path|query|body|header",
    ),
    (
        "bad type",
        lambda y: y.replace("type: object", "type: blob", 1),
        "param 'settings': type 'blob' invalid",
    ),
    (
        "duplicate param",
        lambda y: y.replace("{name: text,", "{name: channel,", 1),
        "param 'channel' empty or duplicate",
    ),
    (
        "duplicate tool",
        lambda y: y.replace("name: admin_settings", "name: send_message", 1),
        "tool name 'send_message' empty or duplicate",
    ),
    ("no tools", lambda y: y.split("tools:")[0] + "tools: []\n", "tools must not be empty"),
    (
        "auth without token",
        lambda y: y.replace(
            "baseUrl: https://chat.example.com\n",
            "baseUrl: https://chat.example.com\nauth: {header: Authorization, format: Bearer xyz}\n",
            1,
        ),
        "auth requires header and a format containing {token}",
    ),
    (
        "header param is the auth header",
        lambda y: (
            WITH_QUERY.replace("in: query", "in: header", 1)
            .replace("name: thread", "name: x-token", 1)
            .replace(
                "baseUrl: https://chat.example.com\n",
                "baseUrl: https://chat.example.com\nauth: {header: X-Token, format: '{token}'}\n",
                1,
            )
        ),
        "header param 'x-token' collides with the auth header",
    ),
]


@pytest.mark.parametrize(("edit", "message"), [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_each_rule_refuses_with_a_clear_message(edit: Callable[[str], str], message: str) -> None:
    spec = parse_toolspec(edit(GOOD_SPEC_YAML).encode())
    problems = toolspec_problems(spec)
    assert any(message in p for p in problems), problems
    with pytest.raises(ToolSpecError):
        validate_toolspec(spec)


def test_form_encoding_and_header_params_are_accepted() -> None:
    text = WITH_QUERY.replace("in: query", "in: header", 1).replace(
        "    path: /api/messages\n", "    path: /api/messages\n    encoding: form\n", 1
    )
    assert toolspec_problems(parse_toolspec(text.encode())) == []


def test_pairing_rules() -> None:
    m = good()
    spec = good_spec()
    missing = replace(spec, tools=spec.tools[:1])
    assert pairing_problems(missing, m) == ["manifest tool 'admin_settings' missing from toolspec"]
    extra = replace(
        spec, tools=(*spec.tools, SpecTool(name="rogue", description="x", method="GET", path="/x"))
    )
    assert pairing_problems(extra, m) == ["toolspec tool 'rogue' not declared in manifest"]
    other = replace(spec, name="other")
    assert pairing_problems(other, m) == [
        "toolspec other@1.4.2 does not match manifest chat-mcp@1.4.2"
    ]
    evil = parse_toolspec(
        GOOD_SPEC_YAML.replace("https://api.chat.example.com", "https://api.evil.com").encode()
    )
    assert pairing_problems(evil, m) == [
        "base URL host 'api.evil.com' not allowed by manifest egress ['chat.example.com', '*.chat.example.com']"
    ]
    # "*.chat.example.com" covers api.chat.example.com; the bare suffix is listed too.
    assert pairing_problems(spec, m) == []


def test_tier_and_auth_coherence() -> None:
    sealed_auth = parse_toolspec(
        GOOD_SPEC_YAML.replace(
            "baseUrl: https://chat.example.com\n",
            "baseUrl: https://chat.example.com\nauth: {header: X-Auth, format: 'Bearer {token}'}\n",
            1,
        ).encode()
    )
    with pytest.raises(ToolSpecError, match="sealed tier forbids a toolspec auth block"):
        check_against_manifest(sealed_auth, good())
    entrusted = replace(
        good(),
        tier="entrusted",
        credentials=(Credential(id="t", type="api_key", inject=Inject(env="TOKEN")),),
    )
    with pytest.raises(ToolSpecError, match="entrusted tier requires a toolspec auth block"):
        check_against_manifest(good_spec(), entrusted)
    check_against_manifest(sealed_auth, entrusted)
    # Entrusted without credentials needs no auth block.
    check_against_manifest(good_spec(), replace(entrusted, credentials=()))


def test_to_json_keeps_reference_names_and_omissions() -> None:
    doc = to_json(good_spec())
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert list(doc) == ["schemaVersion", "name", "version", "baseUrl", "tools"]  # no auth
    first, second = doc["tools"]
    assert first == {
        "name": "send_message",
        "description": "Post a message to a channel",
        "method": "POST",
        "path": "/api/messages",
        "params": [
            {"name": "channel", "in": "body", "type": "string", "required": True},
            {"name": "text", "in": "body", "type": "string", "required": True},
        ],
    }
    assert second["baseUrl"] == "https://api.chat.example.com"
    with_auth = parse_toolspec(
        GOOD_SPEC_YAML.replace(
            "baseUrl: https://chat.example.com\n",
            "baseUrl: https://chat.example.com\nauth: {header: X-Auth, format: '{token}'}\n",
            1,
        ).encode()
    )
    assert to_json(with_auth)["auth"] == {"header": "X-Auth", "format": "{token}"}


def test_the_manifest_yaml_and_spec_share_names() -> None:
    # The sample pair is consistent with itself (guards the fixtures other tests use).
    assert parse_manifest(GOOD_YAML.encode()).name == good_spec().name
