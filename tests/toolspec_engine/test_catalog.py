"""The registry catalog's toolspecs, listed as MCP tools with valid JSON Schemas.

Every toolspec of the catalog goes through the engine's loader and schema builder in
process; a spread of them (every one with a feature worth seeing: an ``auth`` block,
form encoding, header params, a per-tool base URL, plus every fifth of the rest) is
served by a real engine subprocess and listed by the official SDK's client. Each
advertised ``inputSchema`` must be a valid Draft 2020-12 schema that says exactly what
the spec's params say: checked on its fields and by validating argument objects built
from the params with ``jsonschema``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp.shared.exceptions import MCPError

from gigmcp.toolspec_engine.schema import input_schema
from gigmcp.toolspec_engine.spec import load_input
from tests.support.toolspec_catalog import Entry, entries, entry
from tests.support.toolspec_session import engine_session

SAMPLE: dict[str, Any] = {
    "string": "x",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "object": {"k": "v"},
    "array": [1, "two"],
}
WRONG: dict[str, Any] = {
    "string": 7,
    "integer": "7",
    "number": "1.5",
    "boolean": "true",
    "object": [],
    "array": {},
}


def check_schema_matches(schema: dict[str, Any], tool: dict[str, Any]) -> None:
    """``schema`` is valid and accepts exactly what the spec's params describe."""
    Draft202012Validator.check_schema(schema)
    params = tool.get("params") or []
    where = tool["name"]
    assert schema["type"] == "object", where
    assert schema["additionalProperties"] is False, where
    props = schema["properties"]
    assert list(props) == [p["name"] for p in params], where
    for p in params:
        prop = props[p["name"]]
        assert prop["type"] == p["type"], (where, p["name"])
        assert prop.get("description", "") == (p.get("description") or ""), (where, p["name"])
    required = [p["name"] for p in params if p.get("required")]
    assert schema.get("required", []) == required, where

    validator = Draft202012Validator(schema)
    minimal = {p["name"]: SAMPLE[p["type"]] for p in params if p.get("required")}
    full = {p["name"]: SAMPLE[p["type"]] for p in params}
    assert validator.is_valid(minimal), where
    assert validator.is_valid(full), where
    assert not validator.is_valid({**full, "not_a_param_zz": 1}), where
    for p in params:
        assert not validator.is_valid({**full, p["name"]: WRONG[p["type"]]}), (where, p["name"])
        if p.get("required"):
            without = {k: v for k, v in full.items() if k != p["name"]}
            assert not validator.is_valid(without), (where, p["name"])


def test_every_catalog_toolspec_loads_and_builds_valid_schemas() -> None:
    catalog = entries()
    assert len(catalog) >= 200
    tools = 0
    for e in catalog:
        doc, _ = e.engine_input()
        engine = load_input(json.dumps(doc).encode())
        assert engine.name == e.toolspec["name"]
        assert [t.name for t in engine.tools] == [t["name"] for t in e.toolspec["tools"]]
        for tool, raw in zip(engine.tools, e.toolspec["tools"], strict=True):
            check_schema_matches(input_schema(tool), raw)
            tools += 1
    assert tools > 1500  # the whole catalog, not a sample


def _has(e: Entry, feature: str) -> bool:
    spec = e.toolspec
    tools = spec["tools"]
    if feature == "auth":
        return "auth" in spec
    if feature == "form":
        return any(t.get("encoding") == "form" for t in tools)
    if feature == "header":
        return any(p["in"] == "header" for t in tools for p in t.get("params") or [])
    if feature == "baseUrl":
        return any("baseUrl" in t for t in tools)
    raise AssertionError(feature)


def listed_entries() -> list[Entry]:
    catalog = entries()
    chosen = [
        e
        for i, e in enumerate(catalog)
        if i % 5 == 0 or any(_has(e, f) for f in ("auth", "form", "header", "baseUrl"))
    ]
    return chosen


async def test_catalog_toolspecs_list_over_mcp(tmp_path: Path) -> None:
    chosen = listed_entries()
    assert len(chosen) >= 20
    for e in chosen:
        doc, env = e.engine_input()
        async with engine_session(doc, env, tmp_path) as session:
            assert session.initialize_result is not None
            assert session.initialize_result.server_info.name == e.toolspec["name"]
            listed = (await session.list_tools()).tools
        specs = e.toolspec["tools"]
        assert [t.name for t in listed] == [t["name"] for t in specs], e.name
        for tool, raw in zip(listed, specs, strict=True):
            assert tool.description == raw["description"], (e.name, tool.name)
            check_schema_matches(tool.input_schema, raw)
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (raw["method"] == "GET")


async def test_only_the_enabled_tools_are_listed(tmp_path: Path) -> None:
    e = entry("airtable")
    doc, env = e.engine_input(tools=["list_records", "get_record"])
    async with engine_session(doc, env, tmp_path) as session:
        listed = (await session.list_tools()).tools
        assert [t.name for t in listed] == ["list_records", "get_record"]
        # A tool of the spec that is not enabled cannot be called either.
        with pytest.raises(MCPError) as caught:
            await session.call_tool("list_bases", {})
        assert caught.value.error.code == -32602
        assert caught.value.error.message == "Unknown tool: list_bases"
