"""One profile's lists: the union of its servers' tools, prompts and resources.

Owns the per-server tool cache (one fetch at a time per server, shared by whoever asks
meanwhile; dropped when a server's definition changes, it leaves the profile, its
instance closes or it says ``tools/list_changed``, refreshed once per burst of such
notifications), merging and paging across servers with authenticated cursors, and the
renaming of every item to its collision-free name (router/naming.py).

It must never list a tool the profile does not enable or one the pin book hides, and a
server that cannot be reached is skipped, not an error for the whole list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gigmcp.core.jsontypes import JSON
from gigmcp.core.pins import PinBook
from gigmcp.core.views import Assignment, ProfileView
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router import naming
from gigmcp.router.context import RequestContext
from gigmcp.router.cursor import CursorCodec, Position
from gigmcp.router.fanout import FanOut
from gigmcp.router.upstreams import Upstreams

log = logging.getLogger(__name__)

LIST_TTL_MS = 5_000
_TOOLS_CHANGED: JSON = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


class Listing:
    def __init__(
        self,
        view: Callable[[], ProfileView],
        upstreams: Upstreams,
        cursors: CursorCodec,
        fanout: FanOut,
        pins: PinBook | None,
    ) -> None:
        self._view = view
        self._upstreams = upstreams
        self._cursors = cursors
        self._fanout = fanout
        self._pins = pins
        self._tools: dict[str, list[JSON]] = {}
        self._tools_loading: dict[str, asyncio.Future[list[JSON]]] = {}
        # tools/list_changed refreshes: one running per server, one more owed at most.
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._refresh_owed: set[str] = set()

    # ------------------------------------------------------------------ the tool cache

    def forget(self, server: str) -> None:
        """List the server's tools afresh next time."""
        self._tools.pop(server, None)

    def adopt(self, old: ProfileView, new: ProfileView) -> None:
        """A new profile view: forget the tools of servers changed or taken away."""
        for a in old.assignments:
            b = new.assignment(a.server.name)
            if b is None or b.server != a.server:
                self._tools.pop(a.server.name, None)

    def cached(self, server: str) -> list[JSON] | None:
        return self._tools.get(server)

    async def server_tools(self, assignment: Assignment) -> list[JSON]:
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
            if self._view().assignment(name) is not None:
                self._tools[name] = tools
            loading.set_result(tools)
            return tools
        return await asyncio.shield(loading)

    async def _fetch_all(self, assignment: Assignment, method: str, key: str) -> list[JSON]:
        upstream = await self._upstreams.get(assignment)
        items: list[JSON] = []
        cursor: str | None = None
        for _ in range(10_000):  # bounded: a server cannot page us forever
            params: JSON = {"cursor": cursor} if cursor else {}
            result = await self._upstreams.simple(upstream, assignment.server.name, method, params)
            page = result.get(key)
            if isinstance(page, list):
                items.extend(i for i in page if isinstance(i, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    def schedule_refresh(self, server: str) -> None:
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
        a = self._view().assignment(server)
        if a is None:
            return
        self._tools.pop(server, None)
        try:
            await self.server_tools(a)
        except RpcError as err:
            log.warning("refreshing tools of %s failed: %s", server, err.message)
        self._fanout.broadcast(_TOOLS_CHANGED)

    # ------------------------------------------------------------------ lists

    async def list_tools(self, params: JSON) -> JSON:
        assignments = self._view().assignments
        start = 0
        if params.get("cursor") is not None:
            start = self._cursors.decode("tools", params["cursor"]).server_index
        if start >= len(assignments):
            return {"tools": []}
        # Warm every server's cache at once: cold starts overlap instead of adding up.
        results = await asyncio.gather(
            *(self.server_tools(a) for a in assignments[start:]), return_exceptions=True
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

    async def list_paged(self, ctx: RequestContext, method: str, key: str, params: JSON) -> JSON:
        """One gateway page is one upstream page; the cursor carries (server, its cursor)."""
        assignments = self._view().assignments
        pos = Position(0, None)
        if params.get("cursor") is not None:
            pos = self._cursors.decode(method, params["cursor"])
        index, upstream_cursor = pos.server_index, pos.upstream_cursor
        while index < len(assignments):
            a = assignments[index]
            try:
                upstream = await self._upstreams.get(a)
                if _capability_for_list(method) in upstream.capabilities:
                    up_params: JSON = {"cursor": upstream_cursor} if upstream_cursor else {}
                    result = await self._upstreams.simple(
                        upstream, a.server.name, method, up_params
                    )
                    items = [_rename(a.server.name, key, i) for i in result.get(key) or []]
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
                    return cacheable(ctx, out)
            except RpcError as err:
                log.warning("%s: server %s skipped: %s", method, a.server.name, err.message)
            index, upstream_cursor = index + 1, None
        return cacheable(ctx, {key: []})


def cacheable(ctx: RequestContext, result: JSON) -> JSON:
    if ctx.era == "modern":
        result.setdefault("ttlMs", LIST_TTL_MS)
        result.setdefault("cacheScope", "private")
    return result


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


def _capability_for_list(method: str) -> str:
    return "prompts" if method.startswith("prompts") else "resources"
