"""OpenTelemetry traces of a real gateway, received by a real OTLP/HTTP receiver
(tests/support/otlp.py, the official protobuf definitions): a span per MCP request
joined to the client's ``traceparent`` from ``_meta``, a child span per call forwarded
to a server, and that child's context in the ``_meta`` the server received. And JSON
log lines carrying the trace id."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import SERVERS, GatewayProc, gateway
from tests.support.mcp_client import connect, text_of
from tests.support.mcp_http import modern_body, modern_headers, post
from tests.support.otlp import Receiver, Span, by_name, receiver

METAECHO = (sys.executable, str(SERVERS / "metaecho.py"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProc, Receiver]]:
    tmp: Path = tmp_path_factory.mktemp("tracing")
    with receiver() as rx, gateway(tmp, GIG_LOG_FORMAT="json") as g:
        g.add_server("echo", METAECHO)
        g.add_server("broken", ("/bin/false",))
        g.profile("work", "echo")
        g.profile("bad", "broken")
        g.start(GIG_OTLP_ENDPOINT=rx.endpoint)
        yield g, rx


def _call_with_traceparent(g: GatewayProc, trace_id: str, parent: str) -> dict[str, object]:
    body = modern_body("tools/call", {"name": "echo_meta", "arguments": {}})
    body["params"]["_meta"]["traceparent"] = f"00-{trace_id}-{parent}-01"
    body["params"]["_meta"]["tracestate"] = "vendor=abc"
    answer = post(g, "work", body, modern_headers(g.tokens["work"], "tools/call", "echo_meta"))
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert not result.get("isError"), result
    return json.loads(result["content"][0]["text"])  # type: ignore[no-any-return]


def _in_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


def test_the_clients_trace_continues_through_the_gateway_to_the_server(
    world: tuple[GatewayProc, Receiver],
) -> None:
    g, rx = world
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    seen = _call_with_traceparent(g, trace_id, client_span)

    spans = rx.wait(lambda ss: len(_in_trace(ss, trace_id)) >= 2)
    mine = _in_trace(spans, trace_id)
    [request] = by_name(mine, "tools/call")
    [call] = by_name(mine, "tools/call echo_meta")
    # The request's span is the client's span's child; the forwarded call is its child.
    assert request.kind == "server" and request.parent_id == client_span
    assert call.kind == "client" and call.parent_id == request.span_id
    assert request.service == "gigmcp" and request.attributes["mcp.method.name"] == "tools/call"
    assert (
        call.attributes["gen_ai.tool.name"] == "meta" and call.attributes["gigmcp.server"] == "echo"
    )
    assert request.start_ns <= call.start_ns <= call.end_ns <= request.end_ns
    # The server got the gateway's call span as its parent, in the client's trace, and
    # the client's tracestate with it.
    assert seen["traceparent"] == f"00-{trace_id}-{call.span_id}-01"
    assert seen["tracestate"] == "vendor=abc"
    # The same, as the server itself logged what it received.
    assert g.wait_for_server_log("echo", "work", f"00-{trace_id}-{call.span_id}-01")
    # Nothing of the call's arguments or the token is in a span.
    assert g.tokens["work"] not in json.dumps([s.attributes for s in mine])


async def test_a_client_without_trace_context_gets_a_trace_of_its_own(
    world: tuple[GatewayProc, Receiver],
) -> None:
    g, rx = world
    async with connect(g, "work", "legacy") as c:
        result = await c.call_tool("echo_meta", {})
    seen = json.loads(text_of(result))
    _version, trace_id, parent, _flags = seen["traceparent"].split("-")
    spans = rx.wait(lambda ss: any(s.span_id == parent for s in ss))
    [call] = [s for s in spans if s.span_id == parent]
    [request] = [s for s in spans if s.span_id == call.parent_id]
    assert request.name == "tools/call" and request.parent_id == "" and request.trace_id == trace_id
    assert request.attributes["gigmcp.era"] == "legacy"


def test_a_malformed_traceparent_is_ignored_not_trusted(
    world: tuple[GatewayProc, Receiver],
) -> None:
    g, _rx = world
    seen = _call_with_traceparent(g, "0" * 32, "0" * 16)  # all-zero ids are invalid
    assert seen["traceparent"].split("-")[1] != "0" * 32


def test_json_log_lines_carry_the_trace_id(world: tuple[GatewayProc, Receiver]) -> None:
    g, rx = world
    trace_id = secrets.token_hex(16)
    body = modern_body("tools/call", {"name": "broken_x", "arguments": {}})
    body["params"]["_meta"]["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    post(g, "bad", body, modern_headers(g.tokens["bad"], "tools/call", "broken_x"))
    rx.wait(lambda ss: bool(_in_trace(ss, trace_id)))
    lines = [line for line in g.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    failed = [r for r in records if r.get("trace_id") == trace_id]
    assert failed and "start failed" in failed[0]["message"], records[-5:]
    assert failed[0]["level"] == "warning" and len(failed[0]["span_id"]) == 16
    assert not any(g.tokens["bad"] in line or g.tokens["work"] in line for line in lines)
