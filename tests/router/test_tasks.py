"""The tasks extension (io.modelcontextprotocol/tasks), served by the gateway for any
upstream: a slow call becomes a task the client polls, answers and cancels; a quick one
answers directly; a client that did not declare the extension never sees a task; and a
task belongs to the token that created it. Raw 2026-07-28 HTTP, as the SDK has no task
client yet.

Whether a call becomes a task depends on how long it runs, so no outcome here may depend
on how busy the machine is: the gateway for slow calls lets a call run GIG_TASK_AFTER=0.5 s
and its slow calls sleep at least three times that (a busy machine only makes them
slower), and quick calls go to a gateway that waits GIG_TASK_AFTER=60 s, far beyond what
any load makes an echo take."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.gateway import EVERYTHING, GatewayProc, gateway
from tests.support.mcp_http import MODERN, modern_headers

CRASHY = (sys.executable, str(Path(__file__).resolve().parent.parent / "servers" / "crashy.py"))
TASKS = "io.modelcontextprotocol/tasks"


@contextlib.contextmanager
def tasks_gateway(tmp: Path, task_after: str) -> Iterator[GatewayProc]:
    with gateway(tmp, GIG_REQUEST_TIMEOUT="30", GIG_TASK_AFTER=task_after) as g:
        g.add_server("crashy", CRASHY)
        g.add_server("everything", EVERYTHING)
        g.profile("tasks", "crashy", "everything")
        g.profile("other", "crashy")
        g.start()
        yield g


@pytest.fixture(scope="module")
def tgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """Calls become tasks after 0.5 s: every slow call here sleeps 1.5 s or more."""
    with tasks_gateway(tmp_path_factory.mktemp("tasks"), "0.5") as g:
        yield g


@pytest.fixture(scope="module")
def qgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """Calls become tasks after 60 s: a quick call answers directly however busy we are."""
    with tasks_gateway(tmp_path_factory.mktemp("quick"), "60") as g:
        yield g


def rpc(
    gw: GatewayProc,
    method: str,
    params: dict[str, Any],
    name: str | None = None,
    tasks: bool = True,
    capabilities: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    caps = dict(capabilities or {})
    if tasks:
        caps["extensions"] = {TASKS: {}}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": {
            **params,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": caps,
                "io.modelcontextprotocol/clientInfo": {"name": "tasks-tests", "version": "1"},
            },
        },
    }
    r = httpx.post(
        gw.url("tasks"),
        json=body,
        headers=modern_headers(token or gw.tokens["tasks"], method, name),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def call(gw: GatewayProc, tool: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return rpc(gw, "tools/call", {"name": tool, "arguments": arguments}, name=tool, **kw)


def poll(gw: GatewayProc, task_id: str, until: set[str], **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a bound for a hung gateway, not a timing claim
    while True:
        got = rpc(gw, "tasks/get", {"taskId": task_id}, name=task_id, **kw)
        assert "result" in got, got
        if got["result"]["status"] in until or time.monotonic() > deadline:
            return got["result"]
        time.sleep(0.2)


def test_discovery_offers_the_extension(qgw: GatewayProc) -> None:
    got = rpc(qgw, "server/discover", {})
    assert got["result"]["capabilities"]["extensions"] == {TASKS: {}}


def test_a_quick_call_answers_directly(qgw: GatewayProc) -> None:
    got = call(qgw, "crashy_echo", {"text": "fast"})
    assert got["result"]["resultType"] == "complete"
    assert got["result"]["content"][0]["text"] == "fast"


def test_a_slow_call_becomes_a_task_that_completes(tgw: GatewayProc) -> None:
    got = call(tgw, "crashy_slow", {"seconds": 2.5})
    handle = got["result"]
    assert handle["resultType"] == "task" and handle["status"] == "working"
    assert {"taskId", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= set(handle)
    done = poll(tgw, handle["taskId"], {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    assert done["resultType"] == "complete"
    assert done["result"]["content"][0]["text"] == "slept"
    assert "resultType" not in done["result"]


def test_without_the_extension_a_slow_call_is_never_a_task(tgw: GatewayProc) -> None:
    got = call(tgw, "crashy_slow", {"seconds": 1.5}, tasks=False)
    assert got["result"]["resultType"] == "complete"
    assert got["result"]["content"][0]["text"] == "slept"


def test_cancel_stops_the_call_upstream(tgw: GatewayProc) -> None:
    marker = f"task-cancel-{time.monotonic_ns()}"
    handle = call(tgw, "crashy_watched", {"seconds": 30, "marker": marker})["result"]
    assert handle["resultType"] == "task"
    ack = rpc(tgw, "tasks/cancel", {"taskId": handle["taskId"]}, name=handle["taskId"])
    assert ack["result"] == {"resultType": "complete"}
    final = poll(tgw, handle["taskId"], {"cancelled", "completed", "failed"})
    assert final["status"] == "cancelled"
    # The server itself saw the cancellation.
    assert tgw.wait_for_server_log("crashy", "tasks", f"cancelled {marker}")


def test_a_question_mid_call_becomes_input_required_and_update_answers_it(
    tgw: GatewayProc,
) -> None:
    # server-everything asks its client for a sampling; the client declared sampling.
    got = call(
        tgw,
        "everything_trigger-sampling-request",
        {"prompt": "hello task", "maxTokens": 5},
        capabilities={"sampling": {}},
    )
    handle = got["result"]
    assert handle["resultType"] == "task", handle
    asked = poll(tgw, handle["taskId"], {"input_required"}, capabilities={"sampling": {}})
    assert asked["status"] == "input_required", asked
    [(key, request)] = asked["inputRequests"].items()
    assert request["method"] == "sampling/createMessage"
    answer = {
        "role": "assistant",
        "content": {"type": "text", "text": "sampled-by-task-client"},
        "model": "test-model",
        "stopReason": "endTurn",
    }
    # A key that is not outstanding is ignored; the right one resumes the call.
    ack = rpc(
        tgw,
        "tasks/update",
        {"taskId": handle["taskId"], "inputResponses": {"nope": answer, key: answer}},
        name=handle["taskId"],
    )
    assert ack["result"] == {"resultType": "complete"}
    done = poll(tgw, handle["taskId"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert "sampled-by-task-client" in str(done["result"])


def test_attack_a_task_of_another_token_is_unknown(tgw: GatewayProc) -> None:
    handle = call(tgw, "crashy_slow", {"seconds": 2})["result"]
    assert handle["resultType"] == "task"
    second = tgw.cli("token", "mint", "tasks").stdout.strip()
    for method in ("tasks/get", "tasks/cancel"):
        stolen = rpc(tgw, method, {"taskId": handle["taskId"]}, name=handle["taskId"], token=second)
        assert stolen["error"]["code"] == -32602
        assert stolen["error"]["message"] == "Unknown task"
    never = rpc(tgw, "tasks/get", {"taskId": "no-such-task"}, name="no-such-task")
    assert never["error"] == stolen["error"]  # indistinguishable from an id never issued
    assert poll(tgw, handle["taskId"], {"completed"})["status"] == "completed"


def test_task_methods_need_the_task_id_in_mcp_name(tgw: GatewayProc) -> None:
    handle = call(tgw, "crashy_slow", {"seconds": 1.5})["result"]
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/get",
        "params": {
            "taskId": handle["taskId"],
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
                "io.modelcontextprotocol/clientInfo": {"name": "tasks-tests", "version": "1"},
            },
        },
    }
    r = httpx.post(
        tgw.url("tasks"),
        json=body,
        headers=modern_headers(tgw.tokens["tasks"], "tasks/get", "something-else"),
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020


def test_trace_context_in_meta_reaches_the_server(qgw: GatewayProc) -> None:
    """2026-07-28 reserves _meta traceparent/tracestate/baggage for trace propagation."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "crashy_trace",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "trace-test", "version": "1"},
                "traceparent": parent,
            },
        },
    }
    r = httpx.post(
        qgw.url("tasks"),
        json=body,
        headers=modern_headers(qgw.tokens["tasks"], "tools/call", "crashy_trace"),
        timeout=30,
    )
    assert r.json()["result"]["content"][0]["text"] == parent


def test_the_upstream_is_never_offered_tasks_the_gateway_could_not_route(qgw: GatewayProc) -> None:
    """The gateway materialises tasks itself; an upstream must not answer with a task
    handle of its own, so the extension is not passed on (other capabilities are)."""
    got = call(qgw, "crashy_caps", {}, capabilities={"sampling": {}, "extensions": {"x-other": {}}})
    seen = json.loads(got["result"]["content"][0]["text"])
    assert "sampling" in seen
    assert TASKS not in json.dumps(seen)
