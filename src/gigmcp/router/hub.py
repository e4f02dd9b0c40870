"""One profile's aggregated MCP server: merge, route and bridge every assigned upstream.

The hub answers client requests for one profile. It lists the union of its servers'
tools, prompts and resources under collision-free names, routes each call to the right
upstream with its prefix stripped, remaps progress tokens, carries server→client
questions to the client that caused them (bridging legacy requests and modern MRTR both
ways), and forwards change notifications after refreshing its own view.

It must never forward a call to a tool the profile does not enable, never hold a real
credential, never block the event loop, and never tell a client more about a server that
failed to start than its name and a reference to the logged cause. Payloads pass
through as parsed JSON: fields it does not know survive untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.headers import decode_header_value
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router import naming
from gigmcp.router.calls import CAPABILITY_FOR, Call, ParkingLot, Question, attribute
from gigmcp.router.context import RequestContext
from gigmcp.router.cursor import CursorCodec, Position
from gigmcp.router.fanout import FanOut
from gigmcp.router.pins import PinBook
from gigmcp.router.tasks import EXTENSION as TASKS_EXTENSION
from gigmcp.router.tasks import TaskTable, declares_tasks
from gigmcp.store.views import Assignment, AuditEvent, ProfileView, ServerDef
from gigmcp.upstream.types import (
    InstanceKey,
    InstanceUnavailable,
    MessageTooLarge,
    PendingRequest,
    Upstream,
    UpstreamClosed,
    new_ref,
)

log = logging.getLogger(__name__)
JSON = dict[str, Any]

GATEWAY_INFO: JSON = {"name": "gigmcp", "version": "0.1.0"}
LIST_TTL_MS = 5_000
MAX_MRTR_ROUNDS = 16
_UPSTREAM_STATE = "up."
_MODERN_META = (v.META_PROTOCOL_VERSION, v.META_CLIENT_INFO, v.META_CLIENT_CAPABILITIES)


class InstanceSource(Protocol):
    async def get(self, key: InstanceKey, server: ServerDef) -> Upstream: ...


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
    ) -> None:
        self.view = view
        self._pins = pins
        self._source = source
        self._cursors = cursors
        self.parking = parking
        self._record = record
        self._timeout = request_timeout
        self._tools: dict[str, list[JSON]] = {}
        self._tools_loading: dict[str, asyncio.Future[list[JSON]]] = {}
        self.calls: dict[str, list[Call]] = {}
        self._progress: dict[str, Call] = {}
        self._progress_ids = itertools.count(1)
        self.fanout = FanOut(self._unsubscribe_released)
        # Upstream unsubscribes for URIs whose last holder went away.
        self._releasing: set[asyncio.Task[None]] = set()
        self._log_level: str | None = None
        self._seen: dict[str, Upstream] = {}
        # Per server: which (method, name) were seen asking their client something.
        self._asks: dict[str, dict[tuple[str, str | None], bool]] = {}
        self.tasks = TaskTable()
        # tools/list_changed refreshes: one running per server, one more owed at most.
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._refresh_owed: set[str] = set()

    # ------------------------------------------------------------------ profile view

    def update(self, view: ProfileView) -> None:
        """Adopt a new profile view; tell clients when their tool list changed."""
        old = self.view
        self.view = view
        for a in old.assignments:
            b = view.assignment(a.server.name)
            if b is None or b.server != a.server:
                self._tools.pop(a.server.name, None)
        if _tool_selection(old) != _tool_selection(view):
            self.broadcast({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        old_servers = {a.server.name for a in old.assignments}
        new_servers = {a.server.name for a in view.assignments}
        if old_servers != new_servers:
            for gone in old_servers - new_servers:
                self._tools.pop(gone, None)
            self.broadcast({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})
            self.broadcast({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"})

    def _key(self, server: str) -> InstanceKey:
        return InstanceKey(self.view.id, server)

    async def _upstream(self, assignment: Assignment) -> Upstream:
        try:
            upstream = await self._source.get(self._key(assignment.server.name), assignment.server)
            if self._seen.get(assignment.server.name) is not upstream:
                self._seen[assignment.server.name] = upstream
                self._listen_upstream(upstream)
            return upstream
        except asyncio.CancelledError:
            raise
        except InstanceUnavailable as exc:
            # Its cause is in the logs under this reference; the client gets nothing more.
            raise RpcError(rpc.UPSTREAM_UNAVAILABLE, str(exc)) from exc
        except Exception as exc:
            # Not a failure the supervisor explained: log it here, under a reference of
            # our own. Exception text may name host paths, subnets, cgroups: never sent.
            ref = new_ref()
            log.warning(
                "%s: server unavailable (ref %s): %s",
                self._key(assignment.server.name),
                ref,
                exc,
                exc_info=True,
            )
            unavailable = InstanceUnavailable(assignment.server.name, ref)
            raise RpcError(rpc.UPSTREAM_UNAVAILABLE, str(unavailable)) from exc

    def _listen_upstream(self, upstream: Upstream) -> None:
        """A modern server sends change notifications only on a ``subscriptions/listen``
        stream: open one for everything it can change, for the life of the connection."""
        if upstream.era != "modern":
            return
        caps = upstream.capabilities
        wanted = {
            "toolsListChanged": bool((caps.get("tools") or {}).get("listChanged")),
            "promptsListChanged": bool((caps.get("prompts") or {}).get("listChanged")),
            "resourcesListChanged": bool((caps.get("resources") or {}).get("listChanged")),
        }
        if any(wanted.values()):
            upstream.request(
                "subscriptions/listen", {"notifications": {k: v for k, v in wanted.items() if v}}
            )

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
        if method == "resources/unsubscribe":
            if not self.fanout.release(listener, uri):
                return {"result": {}}
            return await self._forward(ctx, assignment, method, params, inner, field="uri")
        if not self.fanout.hold(listener, uri):
            return {"result": {}}
        try:
            outcome = await self._forward(ctx, assignment, method, params, inner, field="uri")
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
            upstream = self._seen.get(parts[0])
            if upstream is None or upstream.closed:
                continue
            try:
                await self._simple(upstream, parts[0], "resources/unsubscribe", {"uri": parts[1]})
            except RpcError as err:
                log.info("resources/unsubscribe on %s failed: %s", parts[0], err.message)

    async def aclose(self) -> None:
        for task in list(self._releasing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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

    # ------------------------------------------------------------------ dispatch

    async def handle(self, ctx: RequestContext, msg: JSON) -> JSON:
        """Answer one client request; returns the whole response message."""
        rid = msg["id"]
        method: str = msg["method"]
        params: JSON = msg.get("params") or {}
        try:
            outcome = await self._dispatch(ctx, method, params)
        except RpcError as err:
            return err.response(rid)
        if "error" in outcome:
            return {"jsonrpc": "2.0", "id": rid, "error": outcome["error"]}
        result = outcome["result"]
        if ctx.era == "modern" and isinstance(result, dict):
            # 2026-07-28: every result says whether it is final.
            result.setdefault("resultType", "complete")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _dispatch(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        if method == "tools/call":
            if declares_tasks(ctx):
                return await self.tasks.call(ctx, params, self._call_tool)
            return await self._call_tool(ctx, params)
        if method in ("tasks/get", "tasks/update", "tasks/cancel") and ctx.era == "modern":
            op = {"tasks/get": self.tasks.get, "tasks/update": self.tasks.update}.get(
                method, self.tasks.cancel
            )
            return {"result": op(ctx, params)}
        if method == "tools/list":
            return {"result": self._cacheable(ctx, await self._list_tools(params))}
        if method == "server/discover":
            return {"result": self.discover()}
        if method == "ping":
            return {"result": {}}
        if method == "prompts/list":
            return {"result": await self._list_paged(ctx, "prompts/list", "prompts", params)}
        if method == "resources/list":
            return {"result": await self._list_paged(ctx, "resources/list", "resources", params)}
        if method == "resources/templates/list":
            return {
                "result": await self._list_paged(
                    ctx, "resources/templates/list", "resourceTemplates", params
                )
            }
        if method == "prompts/get":
            return await self._named(ctx, "prompts/get", params, audit=False)
        if method == "resources/read":
            return await self._by_uri(ctx, "resources/read", params)
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await self._subscription(ctx, method, params)
        if method == "completion/complete":
            return await self._complete(ctx, params)
        if method == "logging/setLevel":
            return {"result": await self._set_level(params)}
        raise RpcError(rpc.METHOD_NOT_FOUND, f"Method not found: {method}")

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

    def _cacheable(self, ctx: RequestContext, result: JSON) -> JSON:
        if ctx.era == "modern":
            result.setdefault("ttlMs", LIST_TTL_MS)
            result.setdefault("cacheScope", "private")
        return result

    # ------------------------------------------------------------------ tools

    async def _server_tools(self, assignment: Assignment) -> list[JSON]:
        name = assignment.server.name
        cached = self._tools.get(name)
        if cached is not None:
            return cached
        loading = self._tools_loading.get(name)
        if loading is None:
            loading = asyncio.get_running_loop().create_future()
            self._tools_loading[name] = loading
            try:
                tools = await self._fetch_all(assignment, "tools/list", "tools")
            except BaseException as exc:
                self._tools_loading.pop(name, None)
                if not loading.done():
                    loading.set_exception(exc)
                loading.exception()  # mark retrieved: the waiters re-raise it themselves
                raise
            self._tools_loading.pop(name, None)
            if self.view.assignment(name) is not None:
                self._tools[name] = tools
            loading.set_result(tools)
            return tools
        return await asyncio.shield(loading)

    async def _fetch_all(self, assignment: Assignment, method: str, key: str) -> list[JSON]:
        upstream = await self._upstream(assignment)
        items: list[JSON] = []
        cursor: str | None = None
        for _ in range(10_000):  # bounded: a server cannot page us forever
            params: JSON = {"cursor": cursor} if cursor else {}
            result = await self._simple(upstream, assignment.server.name, method, params)
            page = result.get(key)
            if isinstance(page, list):
                items.extend(i for i in page if isinstance(i, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    def _request(
        self, upstream: Upstream, server: str, method: str, params: JSON
    ) -> PendingRequest:
        """``upstream.request``, a closed connection made the client's JSON-RPC error.
        A connection handed out alive can close before a request is written on it: the
        hub holds it across awaits (the next page of a list, a question the client is
        answering), and the server may exit meanwhile. The client gets the fixed message
        with a reference; the cause goes to the log under it."""
        try:
            return upstream.request(method, params)
        except UpstreamClosed as exc:
            ref = new_ref()
            log.warning(
                "%s: server unavailable for %s (ref %s): %s", self._key(server), method, ref, exc
            )
            unavailable = InstanceUnavailable(server, ref)
            raise RpcError(rpc.UPSTREAM_UNAVAILABLE, str(unavailable)) from exc

    async def _simple(self, upstream: Upstream, server: str, method: str, params: JSON) -> JSON:
        pending = self._request(upstream, server, method, params)
        try:
            response = await pending.wait(self._timeout)
        except TimeoutError as exc:
            raise RpcError(
                rpc.REQUEST_TIMEOUT, f"Server '{server}' did not answer {method} in time"
            ) from exc
        except UpstreamClosed as exc:
            raise RpcError(
                rpc.UPSTREAM_UNAVAILABLE, f"Server '{server}' exited during {method}"
            ) from exc
        if "error" in response:
            err = response["error"]
            raise RpcError(
                err.get("code", rpc.INTERNAL_ERROR), err.get("message", ""), err.get("data")
            )
        result = response.get("result")
        return result if isinstance(result, dict) else {}

    async def _list_tools(self, params: JSON) -> JSON:
        assignments = self.view.assignments
        start = 0
        if params.get("cursor") is not None:
            start = self._cursors.decode("tools", params["cursor"]).server_index
        if start >= len(assignments):
            return {"tools": []}
        # Warm every server's cache at once: cold starts overlap instead of adding up.
        results = await asyncio.gather(
            *(self._server_tools(a) for a in assignments[start:]), return_exceptions=True
        )
        out: list[JSON] = []
        next_index: int | None = None
        for index, (a, tools) in enumerate(zip(assignments[start:], results, strict=True)):
            if isinstance(tools, BaseException):
                if isinstance(tools, asyncio.CancelledError):
                    raise tools
                log.warning("tools/list: server %s unavailable: %s", a.server.name, tools)
                continue
            if self._pins is not None:
                # Screened at every listing, not when cached: an approval shows the tool
                # again without refetching, a change is caught as soon as it is fetched.
                tools = self._pins.screen(a.server.id, a.server.name, tools)
            for tool in tools:
                tname = tool.get("name")
                if isinstance(tname, str) and a.tool_enabled(tname):
                    exposed = dict(tool)
                    exposed["name"] = naming.join_name(a.server.name, tname)
                    out.append(exposed)
            if len(out) >= 1000 and start + index + 1 < len(assignments):
                next_index = start + index + 1
                break
        result: JSON = {"tools": out}
        if next_index is not None:
            result["nextCursor"] = self._cursors.encode("tools", Position(next_index, None))
        return result

    def _route_tool(self, qualified: object) -> tuple[Assignment, str]:
        if not isinstance(qualified, str):
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: name must be a string")
        parts = naming.split_name(qualified)
        assignment = self.view.assignment(parts[0]) if parts else None
        # A hidden tool (not selected, or changed since consent) is indistinguishable from
        # an unknown one.
        if (
            parts is None
            or assignment is None
            or not assignment.tool_enabled(parts[1])
            or (self._pins is not None and self._pins.hidden(assignment.server.id, parts[1]))
        ):
            raise RpcError(rpc.INVALID_PARAMS, f"Unknown tool: {qualified}")
        return assignment, parts[1]

    async def _call_tool(self, ctx: RequestContext, params: JSON) -> JSON:
        assignment, tool = self._route_tool(params.get("name"))
        if ctx.era == "modern":
            await self._check_param_headers(ctx, assignment, tool, params.get("arguments"))
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._forward(ctx, assignment, "tools/call", params, tool)
            if "error" in result:
                outcome = "rpc_error"
            elif isinstance(result.get("result"), dict) and result["result"].get("isError"):
                outcome = "tool_error"
            elif (result.get("result") or {}).get("resultType") == "input_required":
                outcome = "input_required"
            else:
                outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            args = params.get("arguments")
            self._record(
                AuditEvent(
                    action="tools/call",
                    outcome=outcome,
                    user_id=ctx.user_id,
                    profile_id=self.view.id,
                    server=assignment.server.name,
                    tool=tool,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    arg_bytes=len(rpc.dumps(args)) if args is not None else 0,
                )
            )

    async def _check_param_headers(
        self, ctx: RequestContext, assignment: Assignment, tool: str, arguments: Any
    ) -> None:
        """2026-07-28: a server that reads the body must check ``Mcp-Param-*`` headers
        against the arguments of properties marked ``x-mcp-header`` (-32020 if not)."""
        headers: dict[str, bytes] = ctx.extra.get("param_headers", {})
        # The schema says which arguments are mirrored; without it nothing could be
        # checked, so a cold cache (first call, or after a restart) is filled first.
        cached = self._tools.get(assignment.server.name)
        if cached is None:
            cached = await self._server_tools(assignment)
        schema = next((t.get("inputSchema") for t in cached if t.get("name") == tool), None)
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict):
            return
        args = arguments if isinstance(arguments, dict) else {}
        for prop, spec in props.items():
            mark = spec.get("x-mcp-header") if isinstance(spec, dict) else None
            if not isinstance(mark, str):
                continue
            value = args.get(prop)
            raw = headers.get(mark.lower())
            if value is None:
                continue
            if raw is None:
                raise RpcError(
                    rpc.HEADER_MISMATCH, f"Header mismatch: Mcp-Param-{mark} is required"
                )
            if not _header_matches(decode_header_value(raw), value):
                raise RpcError(
                    rpc.HEADER_MISMATCH,
                    f"Header mismatch: Mcp-Param-{mark} does not match the body",
                )

    async def _named(self, ctx: RequestContext, method: str, params: JSON, audit: bool) -> JSON:
        name = params.get("name")
        parts = naming.split_name(name) if isinstance(name, str) else None
        if parts is None or self.view.assignment(parts[0]) is None:
            raise RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown prompt {name!r}")
        return await self._forward(ctx, self._assignment(parts[0]), method, params, parts[1])

    def _resource(self, params: JSON) -> tuple[Assignment, str, str]:
        """The assignment, qualified URI and server's own URI a request names."""
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: uri must be a string")
        parts = naming.split_uri(uri)
        if parts is None or self.view.assignment(parts[0]) is None:
            raise RpcError(rpc.INVALID_PARAMS, f"Resource not found: {uri}")
        return self._assignment(parts[0]), uri, parts[1]

    async def _by_uri(self, ctx: RequestContext, method: str, params: JSON) -> JSON:
        assignment, _uri, inner = self._resource(params)
        return await self._forward(ctx, assignment, method, params, inner, field="uri")

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
        return await self._forward(
            ctx, self._assignment(parts[0]), "completion/complete", inner, None
        )

    async def _set_level(self, params: JSON) -> JSON:
        level = params.get("level")
        if level not in v.LOG_LEVELS:
            raise RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown log level {level!r}")
        # The upstream session is shared by every client of the profile: ask it for the
        # most verbose level anyone wants, and filter per client on the way out.
        if self._log_level is None or v.log_rank(level) < v.log_rank(self._log_level):
            self._log_level = str(level)
            for a in self.view.assignments:
                await self._apply_level(a)
        return {}

    async def _apply_level(self, a: Assignment) -> None:
        try:
            upstream = await self._upstream(a)
            if upstream.era == "legacy" and "logging" in upstream.capabilities:
                await self._simple(
                    upstream, a.server.name, "logging/setLevel", {"level": self._log_level}
                )
        except RpcError as err:
            log.info("logging/setLevel on %s failed: %s", a.server.name, err.message)

    # ------------------------------------------------------------------ paged lists

    async def _list_paged(self, ctx: RequestContext, method: str, key: str, params: JSON) -> JSON:
        """One gateway page is one upstream page; the cursor carries (server, its cursor)."""
        assignments = self.view.assignments
        pos = Position(0, None)
        if params.get("cursor") is not None:
            pos = self._cursors.decode(method, params["cursor"])
        index, upstream_cursor = pos.server_index, pos.upstream_cursor
        while index < len(assignments):
            a = assignments[index]
            try:
                upstream = await self._upstream(a)
                if _capability_for_list(method) in upstream.capabilities:
                    up_params: JSON = {"cursor": upstream_cursor} if upstream_cursor else {}
                    result = await self._simple(upstream, a.server.name, method, up_params)
                    items = [self._rename(a.server.name, key, i) for i in result.get(key) or []]
                    nxt = result.get("nextCursor")
                    if isinstance(nxt, str) and nxt:
                        after = Position(index, nxt)
                    elif index + 1 < len(assignments):
                        after = Position(index + 1, None)
                    else:
                        after = None
                    out: JSON = {key: items}
                    if after is not None:
                        out["nextCursor"] = self._cursors.encode(method, after)
                    return self._cacheable(ctx, out)
            except RpcError as err:
                log.warning("%s: server %s skipped: %s", method, a.server.name, err.message)
            index, upstream_cursor = index + 1, None
        return self._cacheable(ctx, {key: []})

    @staticmethod
    def _rename(server: str, key: str, item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        item = dict(item)
        if key == "prompts" and isinstance(item.get("name"), str):
            item["name"] = naming.join_name(server, item["name"])
        elif key == "resources" and isinstance(item.get("uri"), str):
            item["uri"] = naming.join_uri(server, item["uri"])
        elif key == "resourceTemplates" and isinstance(item.get("uriTemplate"), str):
            item["uriTemplate"] = naming.join_uri(server, item["uriTemplate"])
        return item

    # ------------------------------------------------------------------ forwarding

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
        if meta:
            out["_meta"] = meta
        else:
            out.pop("_meta", None)
        return out, gateway_token, client_token

    async def _forward(
        self,
        ctx: RequestContext,
        assignment: Assignment,
        method: str,
        params: JSON,
        inner: str | None,
        field: str = "name",
    ) -> JSON:
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(ParkingLot.PREFIX):
            parked = self.parking.take(state, ctx, method, inner)
            return await self._resume(ctx, parked.call, parked.questions, params)
        upstream = await self._upstream(assignment)
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
        pending = self._request(upstream, server, method, params)
        # Await the connection's own future (no task per call); the timeout is ours.
        response = pending.future
        call = Call(self._key(server), ctx, method, inner, pending, response)
        call.deadline = asyncio.get_running_loop().time() + self._timeout
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
        call.deadline = asyncio.get_running_loop().time() + self._timeout
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
            async with asyncio.timeout(self._timeout):
                return await answer
        except TimeoutError:
            return {"error": {"code": rpc.REQUEST_TIMEOUT, "message": "Client did not answer"}}

    def notification(self, key: InstanceKey, message: JSON) -> None:
        method = message.get("method")
        params = message.get("params") or {}
        server = key.server_name
        if method == "notifications/progress":
            self._on_progress(params, message)
        elif method == "notifications/message":
            self._on_log(server, message, params)
        elif method == "notifications/tools/list_changed":
            self._schedule_refresh(server)
        elif method in (
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            self.broadcast({"jsonrpc": "2.0", "method": method})
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

    def _on_progress(self, params: JSON, message: JSON) -> None:
        token = params.get("progressToken")
        call = self._progress.get(token) if isinstance(token, str) else None
        if call is None:
            return
        out = dict(params, progressToken=call.progress_token)
        call.ctx.sink.notify({"jsonrpc": "2.0", "method": "notifications/progress", "params": out})

    def _on_log(self, server: str, message: JSON, params: JSON) -> None:
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
        if not delivered:
            self.broadcast(out, level=level if isinstance(level, str) else None)

    def _schedule_refresh(self, server: str) -> None:
        """A server may say tools/list_changed a million times a second: one refresh
        runs per server and at most one more is owed, never a task per notification."""
        if server in self._refreshing:
            self._refresh_owed.add(server)
            return
        task = asyncio.get_running_loop().create_task(self._refresh_loop(server))
        self._refreshing[server] = task
        task.add_done_callback(lambda _t: self._refreshing.pop(server, None))

    async def _refresh_loop(self, server: str) -> None:
        while True:
            self._refresh_owed.discard(server)
            await self._refresh_tools(server)
            if server not in self._refresh_owed:
                return

    async def _refresh_tools(self, server: str) -> None:
        a = self.view.assignment(server)
        if a is None:
            return
        self._tools.pop(server, None)
        try:
            await self._server_tools(a)
        except RpcError as err:
            log.warning("refreshing tools of %s failed: %s", server, err.message)
        self.broadcast({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})

    def roots_changed(self) -> None:
        """A legacy client's roots changed: tell every running legacy upstream."""
        for upstream in self._seen.values():
            if not upstream.closed and upstream.era == "legacy":
                upstream.notify("notifications/roots/list_changed", None)

    def instance_closed(self, key: InstanceKey) -> None:
        # A restarted server may advertise other tools: list them afresh next time.
        self._tools.pop(key.server_name, None)

    def broadcast(self, message: JSON, level: str | None = None) -> None:
        self.fanout.broadcast(message, level)


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


def _header_matches(header: str | None, value: Any) -> bool:
    if header is None:
        return False
    if isinstance(value, bool):
        return header == ("true" if value else "false")
    if isinstance(value, (int, float)):
        try:
            return float(header) == float(value)
        except ValueError:
            return False
    return isinstance(value, str) and header == value


def _refuse(q: Question, message: str) -> None:
    if not q.answer.done():
        q.answer.set_result({"error": {"code": rpc.METHOD_NOT_FOUND, "message": message}})


def _tool_selection(view: ProfileView) -> tuple[Any, ...]:
    return tuple(
        (a.server.name, a.server, a.default_enabled, a.tool_overrides) for a in view.assignments
    )


def _capability_for_list(method: str) -> str:
    return "prompts" if method.startswith("prompts") else "resources"
