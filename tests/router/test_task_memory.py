"""Attack: a server answers tasks with huge results until the gateway's memory is gone.
Stored task results are bounded in bytes per profile (TaskTable.result_bytes): the
oldest finished tasks are forgotten first, and a result larger than the whole bound is
not kept. Deterministic: each call asks a question first (so it becomes a task at once,
no waiting for the task threshold) and finishes when the test answers it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gigmcp.core.jsontypes import JSON
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router.context import RequestContext
from gigmcp.router.handles import Handles
from gigmcp.router.tasks import EXTENSION, TaskTable


class _Channel:
    """The request's channel; a task never uses it (tasks/update carries answers)."""

    can_ask = False

    def notify(self, message: JSON) -> None:
        return None

    async def ask(self, method: str, params: JSON | None) -> Any:
        raise AssertionError("a task must not ask on the request channel")


def _ctx() -> RequestContext:
    return RequestContext(
        era="modern",
        protocol_version="2026-07-28",
        client_capabilities={"extensions": {EXTENSION: {}}},
        client_info=None,
        token_id=1,
        user_id=1,
        profile_id=1,
        sink=_Channel(),
    )


def _asks_then_answers(size: int) -> Any:
    async def run(ctx: RequestContext, params: JSON) -> JSON:
        if "inputResponses" not in params:
            question = {"method": "elicitation/create", "params": {"message": "go?"}}
            return {"result": {"resultType": "input_required", "inputRequests": {"q": question}}}
        return {"result": {"content": [{"type": "text", "text": "x" * size}]}}

    return run


async def _finished_task(table: TaskTable, size: int) -> str:
    ctx = _ctx()
    handle = await table.call(ctx, {"name": "t", "arguments": {}}, _asks_then_answers(size))
    task_id = handle["result"]["taskId"]
    (key,) = table.get(ctx, {"taskId": task_id})["inputRequests"]
    table.update(ctx, {"taskId": task_id, "inputResponses": {key: {"action": "accept"}}})
    runner = table.find(ctx, {"taskId": task_id}).runner
    assert runner is not None
    await asyncio.wait_for(runner, 5)
    return str(task_id)


async def test_huge_task_results_are_bounded_in_bytes_oldest_forgotten_first() -> None:
    table = TaskTable(Handles(b"k" * 32, "r1"), result_bytes=50_000)
    ids = [await _finished_task(table, 20_000) for _ in range(6)]
    assert table.stored_bytes <= 50_000
    ctx = _ctx()
    assert table.get(ctx, {"taskId": ids[-1]})["status"] == "completed"
    assert len(table.get(ctx, {"taskId": ids[-1]})["result"]["content"][0]["text"]) == 20_000
    with pytest.raises(RpcError, match="Unknown task"):
        table.get(ctx, {"taskId": ids[0]})
    await table.aclose()


async def test_a_result_larger_than_the_whole_bound_is_not_kept() -> None:
    table = TaskTable(Handles(b"k" * 32, "r1"), result_bytes=10_000)
    task_id = await _finished_task(table, 200_000)
    detail = table.get(_ctx(), {"taskId": task_id})
    assert detail["status"] == "failed"
    assert "too large" in detail["error"]["message"]
    assert table.stored_bytes < 10_000
    await table.aclose()
