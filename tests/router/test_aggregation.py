"""A profile endpoint behaves like every assigned server connected directly, with names
namespaced — through the official Python SDK client, in both protocol eras."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import GatewayProc
from tests.support.mcp_client import connect, text_of

MODES = ["legacy", "auto"]


@pytest.mark.parametrize("mode", MODES)
async def test_tools_of_every_server_are_listed_with_their_prefix(
    gw: GatewayProc, mode: str
) -> None:
    async with connect(gw, "alpha", mode) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert {"everything_echo", "memory_read_graph", "time_get_current_time"} <= names
    assert all(n.split("_", 1)[0] in {"everything", "memory", "time"} for n in names)


@pytest.mark.parametrize("mode", MODES)
async def test_calls_route_to_the_right_server(gw: GatewayProc, mode: str) -> None:
    async with connect(gw, "alpha", mode) as c:
        echo = await c.call_tool("everything_echo", {"message": "hello through the gateway"})
        assert "hello through the gateway" in text_of(echo)
        now = await c.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        assert "Europe/Paris" in text_of(now)
        await c.call_tool(
            "memory_create_entities",
            {"entities": [{"name": f"n-{mode}", "entityType": "t", "observations": ["o"]}]},
        )
        graph = await c.call_tool("memory_read_graph", {})
        assert f"n-{mode}" in text_of(graph)


@pytest.mark.parametrize("mode", MODES)
async def test_structured_content_and_unknown_fields_pass_through(
    gw: GatewayProc, mode: str
) -> None:
    async with connect(gw, "alpha", mode) as c:
        result = await c.call_tool("everything_get-structured-content", {"location": "New York"})
    assert result.structured_content is not None
    assert "temperature" in result.structured_content


@pytest.mark.parametrize("mode", MODES)
async def test_resources_templates_and_reads_route_by_prefixed_uri(
    gw: GatewayProc, mode: str
) -> None:
    async with connect(gw, "alpha", mode) as c:
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(50):
            page = await c.list_resources(cursor=cursor) if cursor else await c.list_resources()
            seen.extend(str(r.uri) for r in page.resources)
            cursor = page.next_cursor
            if not cursor:
                break
        assert any(u.startswith("everything+") for u in seen)
        assert all(u.split("+", 1)[0] in {"everything", "memory", "time"} for u in seen)
        templates = await c.list_resource_templates()
        assert any(t.uri_template.startswith("everything+") for t in templates.resource_templates)
        read = await c.read_resource(next(u for u in seen if u.startswith("everything+")))
        assert read.contents


async def test_pagination_returns_every_page_of_every_server(gw: GatewayProc) -> None:
    """server-everything pages its resources; the gateway must not stop at its first page."""
    async with connect(gw, "alpha", "legacy") as c:
        total = 0
        pages = 0
        cursor = None
        while True:
            page = await c.list_resources(cursor=cursor) if cursor else await c.list_resources()
            total += sum(1 for r in page.resources if str(r.uri).startswith("everything+"))
            pages += 1
            cursor = page.next_cursor
            if not cursor or pages > 100:
                break
    direct = await _direct_resource_count()
    assert total == direct
    assert pages >= 2


async def _direct_resource_count() -> int:
    from mcp.client.stdio import StdioServerParameters

    from tests.support.gateway import EVERYTHING

    params = StdioServerParameters(command=EVERYTHING[0], args=list(EVERYTHING[1:]))
    async with Client(params, mode="legacy") as c:
        total, cursor = 0, None
        while True:
            page = await c.list_resources(cursor=cursor) if cursor else await c.list_resources()
            total += len(page.resources)
            cursor = page.next_cursor
            if not cursor:
                return total


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_and_completion_route_by_prefixed_name(gw: GatewayProc, mode: str) -> None:
    async with connect(gw, "alpha", mode) as c:
        prompts = {p.name for p in (await c.list_prompts()).prompts}
        assert "everything_simple-prompt" in prompts
        got = await c.get_prompt("everything_simple-prompt")
        assert got.messages
        if "everything_args-prompt" in prompts:
            done = await c.complete(
                types.PromptReference(type="ref/prompt", name="everything_args-prompt"),
                {"name": "city", "value": ""},
            )
            assert done.completion is not None


async def test_profiles_are_isolated(gw: GatewayProc) -> None:
    async with connect(gw, "beta", "auto") as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert names and all(n.startswith("memory_") for n in names)
        with pytest.raises(MCPError, match="Unknown tool"):
            await c.call_tool("everything_echo", {"message": "x"})
