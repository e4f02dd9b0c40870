"""Tasks (the ``io.modelcontextprotocol/tasks`` extension) materialised by the gateway.

Owns the tasks a profile endpoint hands out: a modern client that declares the
extension on a ``tools/call`` gets the result directly when the call finishes quickly,
and otherwise a task handle (``resultType: "task"``) while the call runs on in the
gateway; it then polls ``tasks/get``, answers questions with ``tasks/update`` and may
``tasks/cancel``. This works whatever the upstream speaks, because the gateway runs the
call itself: a question the server asks mid-call (sampling, elicitation, roots) becomes
the task's ``inputRequests``.

Task ids are handles (router/handles.py: 144 random bits, the replica that runs the task,
a tag binding them to the token that created it): any other token gets the same
"unknown task" error as for an id that never existed, so ids leak nothing. Tasks live
in this process, like parked MRTR calls; a request naming one that reaches another
replica is relayed here (endpoint/relay.py). It must never return a task to a client
that did not declare the extension on that request, and never keep a task past its TTL.
What it keeps is bounded: at most MAX_TASKS_PER_HUB tasks, and finished results and
errors of at most ``result_bytes`` in all (GIG_TASK_RESULT_BYTES): the oldest finished
tasks of the profile are forgotten first; a single result larger than the whole bound
is not kept (the task fails, saying so).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gigmcp.core.jsontypes import JSON
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router.context import RequestContext
from gigmcp.router.handles import Handles

EXTENSION = "io.modelcontextprotocol/tasks"
# The methods that name a task by its id (a handle: router/handles.py).
TASK_METHODS = ("tasks/get", "tasks/update", "tasks/cancel")
# A call still running after this long becomes a task; quicker ones answer directly
# (the default of GIG_TASK_AFTER).
TASK_AFTER_S = 1.0
TASK_TTL_MS = 15 * 60 * 1000
POLL_INTERVAL_MS = 500
MAX_TASKS_PER_HUB = 1000
TASK_RESULT_BYTES = 64 * 1024 * 1024


def declares_tasks(ctx: RequestContext) -> bool:
    ext = ctx.client_capabilities.get("extensions")
    return ctx.era == "modern" and isinstance(ext, dict) and EXTENSION in ext


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Task:
    id: str
    token_id: int
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    expires: float = 0.0
    status: str = "working"
    status_message: str | None = None
    result: JSON | None = None
    error: JSON | None = None
    # Outstanding questions, under keys unique over the task's life, and what they map
    # to in the call's own MRTR round.
    input_requests: dict[str, JSON] = field(default_factory=dict)
    key_map: dict[str, str] = field(default_factory=dict)
    answers: dict[str, JSON] = field(default_factory=dict)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    next_key: int = 0
    # Bytes of ``result`` or ``error`` counted against the table's bound.
    stored_bytes: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def touch(self, status: str) -> None:
        self.status = status
        self.updated_at = _now()

    def detailed(self) -> JSON:
        out: JSON = {
            "taskId": self.id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": TASK_TTL_MS,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.status_message:
            out["statusMessage"] = self.status_message
        if self.status == "input_required":
            out["inputRequests"] = dict(self.input_requests)
        elif self.status == "completed" and self.result is not None:
            out["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            out["error"] = self.error
        return out


# One round of the call: params in, the hub's outcome ({"result"} or {"error"}) out.
CallRound = Callable[[RequestContext, JSON], Awaitable[JSON]]


class TaskTable:
    def __init__(self, handles: Handles, result_bytes: int = TASK_RESULT_BYTES) -> None:
        # Ids are handles naming this replica (router/handles.py): any replica can tell
        # which one runs a task, and for which token it was made.
        self.handles = handles
        self._tasks: dict[str, Task] = {}
        self.result_bytes = result_bytes
        # Seconds a call may run before it becomes a task (GIG_TASK_AFTER).
        self.task_after = TASK_AFTER_S
        self._stored = 0

    @property
    def stored_bytes(self) -> int:
        return self._stored

    def __len__(self) -> int:
        return len(self._tasks)

    def find(self, ctx: RequestContext, params: JSON) -> Task:
        self.expire()
        task_id = params.get("taskId")
        task = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or not secrets.compare_digest(
            str(task.token_id).encode(), str(ctx.token_id).encode()
        ):
            raise RpcError(rpc.INVALID_PARAMS, "Unknown task")
        return task

    def expire(self) -> None:
        now = time.monotonic()
        for task in [t for t in self._tasks.values() if t.expires <= now]:
            self._drop(task)

    def _drop(self, task: Task) -> None:
        self._tasks.pop(task.id, None)
        self._stored -= task.stored_bytes
        task.stored_bytes = 0
        task.result = task.error = None
        if task.runner is not None and not task.runner.done():
            task.runner.cancel()

    def _keep(self, task: Task, *, result: JSON | None = None, error: JSON | None = None) -> None:
        """Store a finished task's result or error within the byte bound."""
        size = len(rpc.dumps(result if result is not None else error))
        if size > self.result_bytes:
            task.result = None
            task.error = {
                "code": rpc.INTERNAL_ERROR,
                "message": f"Result too large to keep as a task ({size} bytes)",
            }
            size = len(rpc.dumps(task.error))
        else:
            task.result, task.error = result, error
        # Make room: the oldest finished tasks of this profile go first.
        for old in [t for t in self._tasks.values() if t.stored_bytes and t is not task]:
            if self._stored + size <= self.result_bytes:
                break
            self._drop(old)
        task.stored_bytes = size
        self._stored += size

    async def aclose(self) -> None:
        for task in list(self._tasks.values()):
            self._drop(task)
            if task.runner is not None:
                with contextlib.suppress(BaseException):
                    await task.runner

    # ------------------------------------------------------------------ tools/call

    async def call(self, ctx: RequestContext, params: JSON, run: CallRound) -> JSON:
        """Run a tools/call for a client that declared tasks: its outcome if it ends
        within ``task_after`` seconds, else a task handle while it runs on."""
        self.expire()
        if len(self._tasks) >= MAX_TASKS_PER_HUB:
            return await run(ctx, params)  # no room for a task: answer the slow way
        task = Task(self.handles.mint("task", ctx.token_id), ctx.token_id)
        task.expires = time.monotonic() + TASK_TTL_MS / 1000
        detached = _detached(ctx)
        first: asyncio.Future[JSON | None] = asyncio.get_running_loop().create_future()
        task.runner = asyncio.get_running_loop().create_task(
            self._run(task, detached, params, run, first)
        )
        try:
            async with asyncio.timeout(self.task_after):
                direct = await asyncio.shield(first)
        except TimeoutError:
            direct = None
        except asyncio.CancelledError:
            task.runner.cancel()  # the client went away before a task existed
            raise
        if direct is not None:
            return direct  # finished quickly: never became a task
        if not first.done():
            first.set_result(None)  # from now on the outcome goes to the task
        # Durable before it is announced: tasks/get resolves from here on.
        self._tasks[task.id] = task
        return {"result": {"resultType": "task", **task.detailed()}}

    async def _run(
        self,
        task: Task,
        ctx: RequestContext,
        params: JSON,
        run: CallRound,
        first: asyncio.Future[JSON | None],
    ) -> None:
        round_params = dict(params)
        try:
            while True:
                outcome = await run(ctx, round_params)
                result = outcome.get("result")
                if isinstance(result, dict) and result.get("resultType") == "input_required":
                    if not first.done():
                        first.set_result(None)  # a question: the answer comes via the task
                    round_params = await self._ask(task, params, result)
                    continue
                if not first.done():
                    first.set_result(outcome)
                    return
                if "error" in outcome:
                    self._keep(task, error=outcome["error"])
                    task.touch("failed")
                else:
                    final = dict(result) if isinstance(result, dict) else {}
                    final.pop("resultType", None)
                    self._keep(task, result=final)
                    task.touch("failed" if task.error is not None else "completed")
                return
        except asyncio.CancelledError:
            task.status_message = "Cancelled by the client"
            task.touch("cancelled")
            if not first.done():
                first.set_result(None)
            raise
        except RpcError as err:
            if not first.done():
                first.set_result({"error": err.to_error()})
                return
            self._keep(task, error=err.to_error())
            task.touch("failed")

    async def _ask(self, task: Task, params: JSON, result: JSON) -> JSON:
        """Surface the call's questions as the task's inputRequests; wait for answers."""
        requests = result.get("inputRequests")
        requests = requests if isinstance(requests, dict) else {}
        task.input_requests.clear()
        task.key_map.clear()
        for inner_key, request in requests.items():
            task.next_key += 1
            key = f"r{task.next_key}"
            task.input_requests[key] = request
            task.key_map[key] = inner_key
        task.answers.clear()
        task.answered.clear()
        task.touch("input_required")
        while set(task.answers) != set(task.key_map):
            await task.answered.wait()
            task.answered.clear()
        responses = {task.key_map[k]: v for k, v in task.answers.items()}
        task.input_requests.clear()
        task.touch("working")
        retry = {k: v for k, v in params.items() if k not in ("requestState", "inputResponses")}
        retry["inputResponses"] = responses
        if isinstance(result.get("requestState"), str):
            retry["requestState"] = result["requestState"]
        return retry

    # ------------------------------------------------------------------ tasks/*

    def get(self, ctx: RequestContext, params: JSON) -> JSON:
        return self.find(ctx, params).detailed()

    def update(self, ctx: RequestContext, params: JSON) -> JSON:
        task = self.find(ctx, params)
        responses = params.get("inputResponses")
        if not isinstance(responses, dict):
            raise RpcError(rpc.INVALID_PARAMS, "tasks/update needs inputResponses")
        # Keys not outstanding (never issued, already answered, superseded) are ignored.
        for key, value in responses.items():
            if key in task.key_map and key not in task.answers and isinstance(value, dict):
                task.answers[key] = value
        task.answered.set()
        return {}

    def cancel(self, ctx: RequestContext, params: JSON) -> JSON:
        task = self.find(ctx, params)
        if not task.terminal and task.runner is not None:
            task.runner.cancel()
        return {}


class _DetachedSink:
    """The channel of a call that outlived its HTTP request: tasks carry no progress or
    log notifications, and questions go through inputRequests, never this channel."""

    can_ask = False

    def notify(self, message: JSON) -> None:
        return None

    async def ask(self, method: str, params: JSON | None) -> Any:
        raise RpcError(rpc.INTERNAL_ERROR, "a task cannot ask on a request channel")


def _detached(ctx: RequestContext) -> RequestContext:
    return RequestContext(
        era=ctx.era,
        protocol_version=ctx.protocol_version,
        client_capabilities=ctx.client_capabilities,
        client_info=ctx.client_info,
        token_id=ctx.token_id,
        user_id=ctx.user_id,
        profile_id=ctx.profile_id,
        sink=_DetachedSink(),
        log_level=ctx.log_level,
        extra=dict(ctx.extra),
    )
