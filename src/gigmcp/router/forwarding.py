"""Forwarding: one client request carried to one upstream and its answer carried back.

Owns the calls in flight per server (a call awaits the connection's own future and runs
its own deadline: no task per call), progress tokens remapped both ways, the ``_meta``
each upstream era expects, server→client questions raised during a call and attributed
to it (router/calls.py), answered on a legacy client's channel or turned into an
``InputRequiredResult`` whose call is parked for a modern client's retry, and an
upstream's own ``InputRequiredResult`` relayed to a modern client or asked of a legacy
one, then retried, for at most ``MAX_MRTR_ROUNDS`` rounds.

It must never route a request to a server it was not given, never let a question reach
a client that did not declare the capability it needs, and never keep a call, a parked
question or a progress token once its request is over.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from typing import Any

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.core.views import Assignment
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router.calls import CAPABILITY_FOR, Call, ParkingLot, Question, attribute
from gigmcp.router.context import RequestContext
from gigmcp.router.tasks import EXTENSION as TASKS_EXTENSION
from gigmcp.router.upstreams import Upstreams
from gigmcp.telemetry import probes, tracing
from gigmcp.upstream.types import MessageTooLarge, Upstream, UpstreamClosed

MAX_MRTR_ROUNDS = 16
_UPSTREAM_STATE = "up."
_MODERN_META = (v.META_PROTOCOL_VERSION, v.META_CLIENT_INFO, v.META_CLIENT_CAPABILITIES)


class Forwarder:
    def __init__(self, upstreams: Upstreams, parking: ParkingLot) -> None:
        self._upstreams = upstreams
        self.parking = parking
        self.calls: dict[str, list[Call]] = {}
        self._progress: dict[str, Call] = {}
        self._progress_ids = itertools.count(1)
        # Per server: which (method, name) were seen asking their client something.
        self._asks: dict[str, dict[tuple[str, str | None], bool]] = {}

    def _upstream_params(
        self, ctx: RequestContext, upstream: Upstream, params: JSON, field: str, inner: str | None
    ) -> tuple[JSON, str | None, str | None]:
        """Copy params for upstream: strip the prefix, remap the progress token, set _meta
        for the upstream's era. Returns (params, gateway progress token, client token)."""
        out = dict(params)
        if inner is not None:
            out[field] = inner
        out.pop("requestState", None)
        out.pop("inputResponses", None)
        meta = dict(params.get("_meta") or {})
        client_token = meta.get("progressToken")
        gateway_token: str | None = None
        if client_token is not None:
            gateway_token = f"gw-{next(self._progress_ids)}"
            meta["progressToken"] = gateway_token
        if upstream.era == "modern":
            meta[v.META_PROTOCOL_VERSION] = upstream.protocol_version
            meta[v.META_CLIENT_CAPABILITIES] = _without_tasks(ctx.client_capabilities)
            if ctx.client_info is not None:
                meta[v.META_CLIENT_INFO] = ctx.client_info
            if ctx.log_level is not None:
                meta[v.META_LOG_LEVEL] = ctx.log_level
        else:
            for k in (*_MODERN_META, v.META_LOG_LEVEL):
                meta.pop(k, None)
        # With tracing on, the upstream's parent is the gateway's span for this call,
        # not the client's (whose context that span joined); off, the client's passes.
        tracing.inject(meta)
        if meta:
            out["_meta"] = meta
        else:
            out.pop("_meta", None)
        return out, gateway_token, client_token

    async def forward(
        self,
        ctx: RequestContext,
        assignment: Assignment,
        method: str,
        params: JSON,
        inner: str | None,
        field: str = "name",
    ) -> JSON:
        scope = probes.forward(method, assignment.server.name, inner, ctx.profile_id)
        if scope is None:
            return await self._forward(ctx, assignment, method, params, inner, field)
        # The span is current while the upstream works: its trace context goes into the
        # forwarded _meta, and the instance's egress requests are attributed to it.
        error: str | None = None
        try:
            response = await self._forward(ctx, assignment, method, params, inner, field)
            if "error" in response:
                error = "json-rpc error"
            return response
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            scope.end(error)

    async def _forward(
        self,
        ctx: RequestContext,
        assignment: Assignment,
        method: str,
        params: JSON,
        inner: str | None,
        field: str,
    ) -> JSON:
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(ParkingLot.PREFIX):
            parked = self.parking.take(state, ctx, method, inner)
            return await self._resume(ctx, parked.call, parked.questions, params)
        upstream = await self._upstreams.get(assignment)
        up_params, gw_token, client_token = self._upstream_params(
            ctx, upstream, params, field, inner
        )
        if isinstance(state, str) and state.startswith(_UPSTREAM_STATE):
            up_params["requestState"] = state[len(_UPSTREAM_STATE) :]
            if "inputResponses" in params:
                up_params["inputResponses"] = params["inputResponses"]
        for _ in range(MAX_MRTR_ROUNDS):
            call = self._start(ctx, upstream, assignment.server.name, method, inner, up_params)
            if gw_token is not None:
                call.progress_token, call.gateway_token = client_token, gw_token
                self._progress[gw_token] = call
            response = await self._drive(call)
            if call.parked:
                return response  # the gateway's own InputRequiredResult for a modern client
            result = response.get("result")
            if not (isinstance(result, dict) and result.get("resultType") == "input_required"):
                return self._finish(ctx, response)
            if ctx.era == "modern":
                # The client answers the upstream's questions itself; keep its state opaque.
                relay = dict(result)
                if isinstance(relay.get("requestState"), str):
                    relay["requestState"] = _UPSTREAM_STATE + relay["requestState"]
                return {"result": relay}
            # Legacy client: ask on its channel, then retry upstream for it.
            answers = await self._ask_all(ctx, result.get("inputRequests") or {})
            up_params = dict(up_params)
            up_params["inputResponses"] = answers
            if isinstance(result.get("requestState"), str):
                up_params["requestState"] = result["requestState"]
            else:
                up_params.pop("requestState", None)
        raise RpcError(rpc.INTERNAL_ERROR, "Server asked for input too many times")

    async def _ask_all(self, ctx: RequestContext, requests: Any) -> JSON:
        if not isinstance(requests, dict):
            raise RpcError(rpc.INTERNAL_ERROR, "Server sent malformed inputRequests")
        answers: JSON = {}
        for key, req in requests.items():
            method = req.get("method") if isinstance(req, dict) else None
            if not isinstance(method, str) or not ctx.sink.can_ask:
                continue
            capability = CAPABILITY_FOR.get(method)
            if capability is not None and not ctx.supports(capability):
                continue
            answers[key] = await ctx.sink.ask(method, req.get("params"))
        return answers

    def _start(
        self,
        ctx: RequestContext,
        upstream: Upstream,
        server: str,
        method: str,
        inner: str | None,
        params: JSON,
    ) -> Call:
        pending = self._upstreams.request(upstream, server, method, params)
        # Await the connection's own future (no task per call); the timeout is ours.
        response = pending.future
        call = Call(self._upstreams.key(server), ctx, method, inner, pending, response)
        call.deadline = asyncio.get_running_loop().time() + self._upstreams.timeout
        response.add_done_callback(lambda _f: call.wake.set())
        self.calls.setdefault(server, []).append(call)
        return call

    def _finish(self, ctx: RequestContext, response: JSON) -> JSON:
        if "error" in response:
            return {"error": response["error"]}
        result = response.get("result")
        if not isinstance(result, dict):
            result = {}
        return {"result": result}

    async def _drive(self, call: Call) -> JSON:
        """Wait for the upstream answer, serving questions the server asks meanwhile."""
        try:
            while True:
                if call.response.done():
                    return self._response_of(call)
                if call.inbox:
                    if call.ctx.sink.can_ask:
                        await self._answer_legacy(call, call.inbox.popleft())
                    elif call.ctx.era == "modern":
                        return self._park(call)
                    else:
                        # A legacy client that takes only JSON answers cannot be asked.
                        _refuse(call.inbox.popleft(), "Client cannot answer on this channel")
                    continue
                try:
                    async with asyncio.timeout_at(call.deadline):
                        await call.wake.wait()
                except TimeoutError:
                    call.pending.cancel("timeout")
                    raise RpcError(
                        rpc.REQUEST_TIMEOUT,
                        f"Server '{call.key.server_name}' did not answer in time",
                    ) from None
                call.wake.clear()
        except asyncio.CancelledError:
            call.pending.cancel("client cancelled the request")
            raise
        finally:
            if call.response.done() or not call.parked:
                self._forget(call)

    def _response_of(self, call: Call) -> JSON:
        name = call.key.server_name
        try:
            return call.response.result()
        except asyncio.CancelledError as exc:
            raise RpcError(rpc.REQUEST_CANCELLED, f"Request to '{name}' was cancelled") from exc
        except TimeoutError as exc:
            raise RpcError(rpc.REQUEST_TIMEOUT, f"Server '{name}' did not answer in time") from exc
        except MessageTooLarge as exc:
            raise RpcError(
                rpc.UPSTREAM_UNAVAILABLE,
                f"Server '{name}' was stopped: it sent a message larger than the gateway "
                "accepts (GIG_MAX_MESSAGE_BYTES)",
            ) from exc
        except UpstreamClosed as exc:
            raise RpcError(
                rpc.UPSTREAM_UNAVAILABLE, f"Server '{name}' exited while handling the request"
            ) from exc

    async def _answer_legacy(self, call: Call, q: Question) -> None:
        try:
            result = await call.ctx.sink.ask(q.method, q.params)
            if not q.answer.done():
                q.answer.set_result({"result": result})
        except RpcError as err:
            if not q.answer.done():
                q.answer.set_result({"error": err.to_error()})

    def _park(self, call: Call) -> JSON:
        questions: dict[str, Question] = {}
        while call.inbox:
            questions[f"q{len(questions) + 1}"] = call.inbox.popleft()
        call.parked = True
        state = self.parking.park(call, questions)
        return {
            "result": {
                "resultType": "input_required",
                "inputRequests": {
                    k: {"method": q.method, "params": q.params or {}} for k, q in questions.items()
                },
                "requestState": state,
            }
        }

    async def _resume(
        self, ctx: RequestContext, call: Call, questions: dict[str, Question], params: JSON
    ) -> JSON:
        call.parked = False
        call.ctx = ctx
        call.deadline = asyncio.get_running_loop().time() + self._upstreams.timeout
        answers = params.get("inputResponses")
        answers = answers if isinstance(answers, dict) else {}
        for key, q in questions.items():
            if q.answer.done():
                continue
            if key in answers and isinstance(answers[key], dict):
                q.answer.set_result({"result": answers[key]})
            else:
                q.answer.set_result(
                    {"error": {"code": rpc.INVALID_PARAMS, "message": "Client gave no answer"}}
                )
        response = await self._drive(call)
        result = response.get("result")
        if isinstance(result, dict) and result.get("resultType") == "input_required":
            return response
        return self._finish(ctx, response)

    def _forget(self, call: Call) -> None:
        history = self._asks.setdefault(call.key.server_name, {})
        if call.asked == 0 and call.response.done():
            history.setdefault((call.method, call.name), False)
        if call.gateway_token is not None:
            self._progress.pop(call.gateway_token, None)
        calls = self.calls.get(call.key.server_name)
        if calls and call in calls:
            calls.remove(call)
        for q in call.inbox:
            if not q.answer.done():
                q.answer.set_result(
                    {"error": {"code": rpc.INTERNAL_ERROR, "message": "Request already finished"}}
                )
        call.inbox.clear()

    def expire_parked(self, parked: Iterable[Any]) -> None:
        for p in parked:
            call: Call = p.call
            call.parked = False
            call.pending.cancel("client did not retry in time")
            for q in p.questions.values():
                if not q.answer.done():
                    q.answer.set_result(
                        {
                            "error": {
                                "code": rpc.REQUEST_CANCELLED,
                                "message": "Client did not answer",
                            }
                        }
                    )
            self._forget(call)

    # ------------------------------------------------------------------ from upstream

    async def server_request(self, key: InstanceKey, message: JSON) -> JSON:
        method = message.get("method")
        if method == "ping":
            return {"result": {}}
        calls = self.calls.get(key.server_name, [])
        history = self._asks.setdefault(key.server_name, {})
        call = attribute(calls, method, history) if isinstance(method, str) else None
        if call is None:
            if method == "roots/list":
                return {"result": {"roots": []}}
            return {
                "error": {
                    "code": rpc.METHOD_NOT_FOUND,
                    "message": f"No connected client can answer {method}",
                }
            }
        answer: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        # Count the question as open from the moment it is attributed, so the next
        # question that arrives before this one is served goes to another call.
        call.open_questions += 1
        call.asked += 1
        history[(call.method, call.name)] = True

        def answered(_f: asyncio.Future[JSON]) -> None:
            call.open_questions -= 1

        answer.add_done_callback(answered)
        call.inbox.append(Question(str(method), message.get("params"), answer))
        call.wake.set()
        try:
            async with asyncio.timeout(self._upstreams.timeout):
                return await answer
        except TimeoutError:
            return {"error": {"code": rpc.REQUEST_TIMEOUT, "message": "Client did not answer"}}

    def on_progress(self, params: JSON) -> None:
        token = params.get("progressToken")
        call = self._progress.get(token) if isinstance(token, str) else None
        if call is None:
            return
        out = dict(params, progressToken=call.progress_token)
        call.ctx.sink.notify({"jsonrpc": "2.0", "method": "notifications/progress", "params": out})

    def on_log(self, server: str, params: JSON) -> tuple[JSON, str | None] | None:
        """A server's log message to the modern calls on that server that asked for its
        level; when none took it, the message and its level for the listeners."""
        level = params.get("level")
        log_params = dict(params)
        log_params.setdefault("logger", server)
        out: JSON = {"jsonrpc": "2.0", "method": "notifications/message", "params": log_params}
        delivered = False
        for call in self.calls.get(server, []):
            want = call.ctx.log_level
            if (
                call.ctx.era == "modern"
                and want is not None
                and v.log_rank(level) >= v.log_rank(want)
            ):
                call.ctx.sink.notify(out)
                delivered = True
        if delivered:
            return None
        return out, level if isinstance(level, str) else None


def _without_tasks(capabilities: JSON) -> JSON:
    """The gateway runs tasks itself (router/tasks.py); an upstream told that the client
    takes tasks could answer with a handle whose id the gateway cannot route back."""
    ext = capabilities.get("extensions")
    if not isinstance(ext, dict) or TASKS_EXTENSION not in ext:
        return capabilities
    out = dict(capabilities)
    rest = {k: val for k, val in ext.items() if k != TASKS_EXTENSION}
    if rest:
        out["extensions"] = rest
    else:
        out.pop("extensions")
    return out


def _refuse(q: Question, message: str) -> None:
    if not q.answer.done():
        q.answer.set_result({"error": {"code": rpc.METHOD_NOT_FOUND, "message": message}})
