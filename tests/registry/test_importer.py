"""server.json → manifest draft: what maps, what is left as a TODO."""

from __future__ import annotations

from typing import Any

import pytest

from gigmcp.registry.errors import DraftError
from gigmcp.registry.importer import derive_name, draft_from_server_json
from gigmcp.registry.manifest import Entitlements, parse_manifest
from gigmcp.registry.validate import manifest_problems
from tests.support.registry_samples import NPM_INTEGRITY, PYPI_INTEGRITY, replace

NPM_SERVER: dict[str, Any] = {
    "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
    "name": "io.github.example/Weather_MCP",
    "title": "Weather",
    "description": "Forecasts for a city <fast> & free",
    "version": "1.2.0",
    "repository": {"url": "https://github.com/example/weather-mcp.git", "source": "github"},
    "packages": [
        {
            "registryType": "npm",
            "identifier": "@example/weather-mcp",
            "version": "1.2.0",
            "transport": {"type": "stdio"},
            "runtimeHint": "npx",
            "runtimeArguments": [{"type": "named", "name": "--max-old-space-size", "value": "256"}],
            "packageArguments": [
                {"type": "positional", "value": "serve"},
                {"type": "positional", "valueHint": "config_path"},
                {
                    "type": "named",
                    "name": "--units",
                    "value": "{units}",
                    "variables": {"units": {}},
                },
            ],
            "environmentVariables": [
                {"name": "WEATHER_API_KEY", "isSecret": True, "isRequired": True},
                {"name": "LOG_LEVEL", "default": "info"},
            ],
        },
        {"registryType": "oci", "identifier": "docker.io/example/weather:1.2.0"},
    ],
    "remotes": [{"type": "streamable-http", "url": "https://weather.example.com/mcp"}],
}

PYPI_SERVER: dict[str, Any] = {
    "name": "io.github.example/clock",
    "description": "What time is it",
    "version": "2025.1.14",
    "packages": [
        {"registryType": "pypi", "identifier": "mcp-server-clock", "version": "2025.1.14"}
    ],
}


def test_npm_draft_parses_and_maps_what_it_can() -> None:
    text, todos = draft_from_server_json(NPM_SERVER)
    m = parse_manifest(text.encode())  # strict parse: the draft has no unknown field
    assert (m.name, m.version, m.tier) == ("weather-mcp", "1.2.0", "sealed")
    assert (m.source.repo, m.source.tag) == ("github.com/example/weather-mcp", "v1.2.0")
    assert m.display_name == "Weather"
    assert m.description == "Forecasts for a city <fast> & free"
    (package,) = m.packages
    assert (package.registry_type, package.identifier, package.version) == (
        "npm",
        "@example/weather-mcp",
        "1.2.0",
    )
    assert package.runtime_arguments == ("--max-old-space-size", "256")
    assert package.package_arguments == ("serve",)
    assert package.lock is None
    assert package.integrity == "TODO"
    joined = "\n".join(todos)
    for expected in (
        "packages[0].integrity: the tarball's sha512 SRI (npm view @example/weather-mcp@1.2.0 dist.integrity)",
        "argument 'config_path' needs a value chosen by the operator",
        "argument '--units' needs a value chosen by the operator",
        "credentials: WEATHER_API_KEY is a secret",
        "environment variable LOG_LEVEL is not carried by the manifest",
        "package 'docker.io/example/weather:1.2.0' of type 'oci' skipped",
        "remotes skipped",
        "entitlements.egress:",
        "tools: list each tool",
        "source.tag: check that the release tag is v1.2.0",
    ):
        assert expected in joined, expected
    assert "# TODO" in text
    # Only the TODO placeholder stands between the draft and a valid manifest.
    assert manifest_problems(m) == [
        "packages[0].integrity invalid: npm needs sha512-<base64> (the registry's SRI)"
    ]
    done = replace(
        m,
        packages=(replace(package, integrity=NPM_INTEGRITY),),
        entitlements=Entitlements(egress=("api.weather.example.com",)),
    )
    assert manifest_problems(done) == []


def test_pypi_draft_has_an_empty_lock_to_fill() -> None:
    text, todos = draft_from_server_json(PYPI_SERVER)
    m = parse_manifest(text.encode())
    assert m.packages[0].lock == ()
    assert m.source.repo == "TODO"
    assert any(t.startswith("packages[0].lock: every dependency") for t in todos)
    assert any(t.startswith("source.repo:") for t in todos)
    fixed = replace(m, packages=(replace(m.packages[0], integrity=PYPI_INTEGRITY),))
    assert manifest_problems(fixed) == []


def test_versions_and_names_that_need_an_operator() -> None:
    server = dict(PYPI_SERVER, version="2.0.0-beta.1", name="io.example/___")
    text, todos = draft_from_server_json(server)
    m = parse_manifest(text.encode())
    assert m.version == "2.0.0"
    assert m.name == "todo"
    assert any("version '2.0.0-beta.1' is not MAJOR.MINOR.PATCH" in t for t in todos)
    assert any(t.startswith("name: choose a [a-z0-9-] name") for t in todos)


def test_hostile_text_cannot_break_the_yaml() -> None:
    server = dict(PYPI_SERVER, description="x\u2028tier: entrusted\n# y", title='"q"\x85z')
    text, _ = draft_from_server_json(server)
    assert text.isascii()
    m = parse_manifest(text.encode())
    assert m.tier == "sealed"
    assert m.description == "x\u2028tier: entrusted\n# y"
    assert m.display_name == '"q"\x85z'


def test_no_usable_package() -> None:
    text, todos = draft_from_server_json({"name": "a/b", "version": "1.0.0"})
    assert parse_manifest(text.encode()).packages == ()
    assert "no npm or pypi package: give an image (ref, digest, entrypoint) instead" in todos


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "server.json must be an object"),
        ({"version": "1.0.0"}, "server.json has no name"),
        ({"name": "a/b"}, "server.json has no version"),
        ({"name": "a/b", "version": 1}, "server.json has no version"),
    ],
)
def test_refusals(data: Any, message: str) -> None:
    with pytest.raises(DraftError, match=message):
        draft_from_server_json(data)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("io.github.user/weather", "weather"),
        ("io.github.user/Weather_MCP.Server", "weather-mcp-server"),
        ("plain", "plain"),
        ("a/--x--", "x"),
    ],
)
def test_derive_name(name: str, want: str) -> None:
    assert derive_name(name) == want
