"""One profile's aggregated MCP server: the small hub that dispatches.

The hub answers client requests for one profile and takes what its upstreams send. It
composes the pieces that do the work: listing (router/listing.py: the tool cache,
merged and paged lists, names), forwarding (router/forwarding.py: calls, MRTR parking,
server→client questions, progress), tool calls (router/toolcalls.py: routing, mirrored
headers, audit), fan-out (router/fanout.py: listeners, change notifications and who
subscribed to which resource), the profile's upstream connections
(router/upstreams.py) and tasks (router/tasks.py). What is left here is which piece a
method goes to, routing a qualified prompt name, resource URI or completion reference
to its server, adopting a new profile view, and resource subscriptions: forwarded
upstream for the first holder the fan-out records, and after the last one releases.

It must never forward a call to a tool the profile does not enable, never hold a real
credential, never block the event loop, and never tell a client more about a server that
failed to start than its name and a reference to the logged cause. Payloads pass
through as parsed JSON: fields it does not know survive untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.core.pins import PinBook
from gigmcp.core.server_info import GATEWAY_INFO
from gigmcp.core.views import Assignment, AuditEvent, ProfileView
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router import naming
from gigmcp.router.calls import ParkingLot
from gigmcp.router.context import RequestContext
from gigmcp.router.cursor import CursorCodec
from gigmcp.router.fanout import FanOut
from gigmcp.router.forwarding import Forwarder
from gigmcp.router.listing import LIST_TTL_MS, Listing, cacheable
from gigmcp.router.tasks import EXTENSION as TASKS_EXTENSION
from gigmcp.router.tasks import TASK_METHODS, TaskTable, declares_tasks
from gigmcp.router.toolcalls import CallGate, ToolCalls
from gigmcp.router.upstreams import InstanceSource, Upstreams
from gigmcp.telemetry import probes

log = logging.getLogger(__name__)


class ProfileHub:
    def __init__(
        self,
        view: ProfileView,
        source: InstanceSource,
        cursors: CursorCodec,
        parking: ParkingLot,
        record: Callable[[AuditEvent], None],
        request_timeout: float,
        pins: PinBook | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.view = view
        self.fanout = FanOut(self._unsubscribe_released)
        self._upstreams = Upstreams(view.id, source, request_timeout)
        self._listing = Listing(self._current, self._upstreams, cursors, self.fanout, pins)
        self._forwarder = Forwarder(self._upstreams, parking)
        self._tools = ToolCalls(self._current, self._listing, self._forwarder, record, pins, gate)
        self.parking = parking
        self.tasks = TaskTable(parking.handles)
        # Upstream unsubscribes for URIs whose last holder went away.
        self._releasing: set[asyncio.Task[None]] = set()

    def _current(self) -> ProfileView:
        return self.view

    # ------------------------------------------------------------------ profile view

    def update(self, view: ProfileView) -> None:
        """Adopt a new profile view; tell clients when their tool list changed."""
        old = self.view
        self.view = view
        self._listing.adopt(old, view)
        if _tool_selection(old) != _tool_selection(view):
            self.fanout.broadcast({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        old_servers = {a.server.name for a in old.assignments}
        new_servers = {a.server.name for a in view.assignments}
        if old_servers != new_servers:
            for method in (
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ):
                self.fanout.broadcast({"jsonrpc": "2.0", "method": method})

    def _assignment(self, server: str) -> Assignment:
        a = self.view.assignment(server)
        if a is None:
            raise RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown server '{server}'")
        return a

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> JSON:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "completions": {},
            "logging": {},
        }

    def instructions(self) -> str:
        names = ", ".join(a.server.name for a in self.view.assignments) or "none"
        return (
            f"Gig'MCP profile '{self.view.slug}'. Tools and prompts are named "
            f"<server>_<name>; servers: {names}."
        )

    def discover(self) -> JSON:
        # Extensions are a 2026-07-28 notion: only the modern discovery offers them.
        capabilities = {**self.capabilities(), "extensions": {TASKS_EXTENSION: {}}}
        return {
            "resultType": "complete",
            "supportedVersions": list(v.ALL_VERSIONS),
            "capabilities": capabilities,
            "instructions": self.instructions(),
            "_meta": {v.META_SERVER_INFO: GATEWAY_INFO},
            "ttlMs": LIST_TTL_MS,
            "cacheScope": "private",
        }

    # ------------------------------------------------------------------ dispatch

    async def handle(self, ctx: RequestContext, msg: JSON) -> JSON:
        """Answer one client request; returns the whole response message."""
        rid = msg["id"]
        method: str = msg["method"]
        params: JSON = msg.get("params") or {}
        probe = probes.request(method, ctx.era, params.get("_meta"))
        if probe is None:
            outcome = await self._answer(ctx, method, params)
        else:
            outcome = await self._observed(probe, ctx, method, params)
        if "error" in outcome:
            return {"jsonrpc": "2.0", "id": rid, "error": outcome["error"]}
        result = outcome["result"]
        if ctx.era == "modern" and isinstance(result, dict):
            # 2026-07-28: every result says whether it is final.
            result.setdefault("resultType", "complete")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _answer(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        try:
            return await self._dispatch(ctx, method, params)
        except RpcError as err:
            return {"error": err.to_error()}

    async def _observed(
        self, probe: probes.Request, ctx: RequestContext, method: str, params: JSON
    ) -> JSON:
        """:meth:`_answer` inside the request's span, counted by its outcome."""
        outcome, code = "failed", None
        try:
            answer = await self._answer(ctx, method, params)
            error, result = answer.get("error"), answer.get("result")
            if isinstance(error, dict):
                outcome, code = "error", error.get("code")
            elif isinstance(result, dict) and result.get("resultType") == "input_required":
                outcome = "input_required"
            else:
                outcome = "ok"
            return answer
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            probe.end(outcome, code if isinstance(code, int) else None)

    async def _dispatch(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        if method == "tools/call":
            if declares_tasks(ctx):
                return await self.tasks.call(ctx, params, self._tools.call)
            return await self._tools.call(ctx, params)
        if method in TASK_METHODS and ctx.era == "modern":
            op = {"tasks/get": self.tasks.get, "tasks/update": self.tasks.update}.get(
                method, self.tasks.cancel
            )
            return {"result": op(ctx, params)}
        if method == "tools/list":
            return {"result": cacheable(ctx, await self._listing.list_tools(params))}
        if method == "server/discover":
            return {"result": self.discover()}
        if method == "ping":
            return {"result": {}}
        if method == "prompts/list":
            return {"result": await self._listing.list_paged(ctx, method, "prompts", params)}
        if method == "resources/list":
            return {"result": await self._listing.list_paged(ctx, method, "resources", params)}
        if method == "resources/templates/list":
            return {
                "result": await self._listing.list_paged(ctx, method, "resourceTemplates", params)
            }
        if method == "prompts/get":
            return await self._named(ctx, "prompts/get", params)
        if method == "resources/read":
            assignment, _uri, inner = self._resource(params)
            return await self._forwarder.forward(ctx, assignment, method, params, inner, "uri")
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscription(ctx, method, params)
        if method == "completion/complete":
            return await self._complete(ctx, params)
        if method == "logging/setLevel":
            return {"result": await self._upstreams.set_level(params, self.view.assignments)}
        raise RpcError(rpc.METHOD_NOT_FOUND, f"Method not found: {method}")

    # ------------------------------------------------------------------ routing

    async def _named(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        name = params.get("name")
        parts = naming.split_name(name) if isinstance(name, str) else None
        if parts is None or self.view.assignment(parts[0]) is None:
            raise RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown prompt {name!r}")
        return await self._forwarder.forward(
            ctx, self._assignment(parts[0]), method, params, parts[1]
        )

    def _resource(self, params: JSON) -> tuple[Assignment, str, str]:
        """The assignment, qualified URI and server's own URI a request names."""
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: uri must be a string")
        parts = naming.split_uri(uri)
        if parts is None or self.view.assignment(parts[0]) is None:
            raise RpcError(rpc.INVALID_PARAMS, f"Resource not found: {uri}")
        return self._assignment(parts[0]), uri, parts[1]

    async def _complete(self, ctx: RequestContext, params: JSON) -> JSON:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: ref must be an object")
        if ref.get("type") == "ref/prompt":
            parts = (
                naming.split_name(ref.get("name", "")) if isinstance(ref.get("name"), str) else None
            )
            field = "name"
        else:
            parts = (
                naming.split_uri(ref.get("uri", "")) if isinstance(ref.get("uri"), str) else None
            )
            field = "uri"
        if parts is None or self.view.assignment(parts[0]) is None:
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: unknown completion reference")
        inner = dict(params)
        inner["ref"] = dict(ref, **{field: parts[1]})
        return await self._forwarder.forward(
            ctx, self._assignment(parts[0]), "completion/complete", inner, None
        )

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, ctx: RequestContext, uri: str) -> bool:
        """Subscribe ``ctx.listener`` (a listen stream) to a qualified resource URI; it
        is released when the listener is removed from the fan-out."""
        outcome = await self._dispatch(ctx, "resources/subscribe", {"uri": uri})
        return "error" not in outcome

    async def _subscription(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        """``resources/subscribe`` and ``resources/unsubscribe``: held per listener by the
        fan-out, forwarded upstream only for the first holder and after the last."""
        listener = ctx.listener
        if listener is None:
            # Updates go to a listener; a request without one (2026-07-28 subscribes on a
            # subscriptions/listen stream) would change a subscription others share.
            raise RpcError(rpc.METHOD_NOT_FOUND, f"Method not found: {method}")
        assignment, uri, inner = self._resource(params)
        forward = self._forwarder.forward
        if method == "resources/unsubscribe":
            if not self.fanout.release(listener, uri):
                return {"result": {}}
            return await forward(ctx, assignment, method, params, inner, "uri")
        if not self.fanout.hold(listener, uri):
            return {"result": {}}
        try:
            outcome = await forward(ctx, assignment, method, params, inner, "uri")
        except BaseException:
            self.fanout.release(listener, uri)
            raise
        if "error" in outcome:
            self.fanout.release(listener, uri)
        return outcome

    def _unsubscribe_released(self, uris: list[str]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._unsubscribe_upstream(uris))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _unsubscribe_upstream(self, uris: list[str]) -> None:
        """Unsubscribe upstream from URIs nobody holds any more. Only on a connection that
        is still open: a server is never started for this, and one that exited took its
        subscriptions with it."""
        for uri in uris:
            parts = naming.split_uri(uri)
            if parts is None or self.fanout.held(uri):
                continue  # subscribed again meanwhile: the upstream subscription stays
            upstream = self._upstreams.open(parts[0])
            if upstream is None:
                continue
            try:
                await self._upstreams.simple(
                    upstream, parts[0], "resources/unsubscribe", {"uri": parts[1]}
                )
            except RpcError as err:
                log.info("resources/unsubscribe on %s failed: %s", parts[0], err.message)

    # ------------------------------------------------------------------ from upstream

    async def server_request(self, key: InstanceKey, message: JSON) -> JSON:
        return await self._forwarder.server_request(key, message)

    def notification(self, key: InstanceKey, message: JSON) -> None:
        method = message.get("method")
        params = message.get("params") or {}
        server = key.server_name
        if method == "notifications/progress":
            self._forwarder.on_progress(params)
        elif method == "notifications/message":
            unclaimed = self._forwarder.on_log(server, params)
            if unclaimed is not None:
                self.fanout.broadcast(*unclaimed)
        elif method == "notifications/tools/list_changed":
            self._listing.schedule_refresh(server)
        elif method in (
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            self.fanout.broadcast({"jsonrpc": "2.0", "method": method})
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str):
                out = dict(params, uri=naming.join_uri(server, uri))
                out.pop("_meta", None)
                self.fanout.updated({"jsonrpc": "2.0", "method": method, "params": out}, out["uri"])
        elif method == "notifications/cancelled":
            return  # the server gave up a question; its answer will simply be ignored
        else:
            log.debug("dropping notification %s from %s", method, server)

    def roots_changed(self) -> None:
        """A legacy client's roots changed: tell every running legacy upstream."""
        self._upstreams.roots_changed()

    def instance_closed(self, key: InstanceKey) -> None:
        # A restarted server may advertise other tools: list them afresh next time.
        self._listing.forget(key.server_name)

    def expire_parked(self, parked: Iterable[Any]) -> None:
        self._forwarder.expire_parked(parked)

    async def aclose(self) -> None:
        for task in list(self._releasing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _tool_selection(view: ProfileView) -> tuple[Any, ...]:
    return tuple(
        (a.server.name, a.server, a.default_enabled, a.tool_overrides) for a in view.assignments
    )
