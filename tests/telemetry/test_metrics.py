"""Prometheus metrics of a real gateway, scraped from their own listener and read with
the Prometheus client's own parser: each family moves after real calls from the official
SDK client, and its labels stay bounded."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from gigmcp.telemetry.metrics import MAX_TOOLS_PER_SERVER, OTHER, Metrics
from tests.support.gateway import SERVERS, GatewayProc, free_port, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.mcp_http import modern_body, modern_headers, post
from tests.support.scrape import scrape, total, value

METAECHO = (sys.executable, str(SERVERS / "metaecho.py"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProc, str]]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    address = f"127.0.0.1:{free_port()}"
    with gateway(tmp, GIG_METRICS_LISTEN=address) as g:
        g.add_server("echo", METAECHO)
        g.add_server("broken", ("/bin/false",))  # exits before its handshake
        g.profile("work", "echo", "broken")
        g.start()
        yield g, address


async def test_tool_calls_move_their_counters_and_histograms(
    world: tuple[GatewayProc, str],
) -> None:
    g, address = world
    before = scrape(address)
    async with connect(g, "work", "auto") as c:
        for _ in range(3):
            result = await c.call_tool("echo_meta", {})
            assert not result.is_error, text_of(result)
        assert (await c.call_tool("echo_fail", {})).is_error
    after = scrape(address)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gigmcp_tool_calls_total", server="echo", tool="meta", outcome="ok") == 3
    assert moved("gigmcp_tool_calls_total", server="echo", tool="fail", outcome="tool_error") == 1
    assert moved("gigmcp_tool_call_duration_seconds_count", server="echo") == 4
    assert moved("gigmcp_tool_call_duration_seconds_sum", server="echo") > 0
    # Every call was answered (a tool's error is a result), counted by method.
    calls = total(after, "gigmcp_mcp_requests_total", method="tools/call", outcome="ok")
    assert (
        calls - total(before, "gigmcp_mcp_requests_total", method="tools/call", outcome="ok") == 4
    )
    assert total(after, "gigmcp_mcp_request_duration_seconds_count", method="tools/call") >= 4
    assert value(after, "gigmcp_instance_starts_total", server="echo", outcome="ok") >= 1
    assert value(after, "gigmcp_instances", state="running") >= 1
    # The store's connection pool, read at the scrape.
    assert ("gigmcp_db_pool_size", frozenset({("pool", "catalog")})) in after
    assert value(after, "gigmcp_db_pool_checked_out", pool="catalog") >= 0


async def test_a_server_that_cannot_start_is_a_failed_start(world: tuple[GatewayProc, str]) -> None:
    g, address = world
    before = value(
        scrape(address), "gigmcp_instance_starts_total", server="broken", outcome="failed"
    )
    async with connect(g, "work", "auto") as c:
        await c.list_tools()  # asks every server of the profile, the broken one too
    after = scrape(address)
    assert value(after, "gigmcp_instance_starts_total", server="broken", outcome="failed") > before
    assert value(after, "gigmcp_instances", state="crashed") >= 1


def test_refusals_and_unknown_methods_count_without_client_words(
    world: tuple[GatewayProc, str],
) -> None:
    g, address = world
    before = scrape(address)
    token = g.tokens["work"]
    assert (
        post(g, "work", modern_body("ping"), modern_headers("gig_wrong", "ping")).status_code == 401
    )
    made_up = "x/" + "a" * 40  # a client's own method name must never become a label value
    answer = post(g, "work", modern_body(made_up), modern_headers(token, made_up))
    assert answer.json()["error"]["code"] == -32601
    after = scrape(address)
    assert (
        value(after, "gigmcp_mcp_http_rejections_total", status="401")
        - value(before, "gigmcp_mcp_http_rejections_total", status="401")
        == 1
    )
    assert (
        value(after, "gigmcp_mcp_requests_total", method=OTHER, era="modern", outcome="error")
        - value(before, "gigmcp_mcp_requests_total", method=OTHER, era="modern", outcome="error")
        == 1
    )
    exposed = httpx.get(f"http://{address}/metrics", timeout=10).text
    assert made_up not in exposed and token not in exposed and "gig_wrong" not in exposed


def test_the_listener_serves_metrics_only_and_the_mcp_port_serves_none(
    world: tuple[GatewayProc, str],
) -> None:
    g, address = world
    assert httpx.get(f"http://{address}/", timeout=10).status_code == 404
    assert httpx.post(f"http://{address}/metrics", timeout=10).status_code == 405
    assert "gigmcp_mcp_requests" not in httpx.get(f"{g.base}/metrics", timeout=10).text


def test_a_hostile_server_cannot_mint_tool_labels_past_the_cap() -> None:
    m = Metrics()
    names = {m.tool("evil", f"tool{i}") for i in range(MAX_TOOLS_PER_SERVER + 50)}
    assert len(names) == MAX_TOOLS_PER_SERVER + 1 and OTHER in names
    assert m.tool("good", "tool0") == "tool0"  # another server's tools have their own cap
