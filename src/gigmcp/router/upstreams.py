"""One profile's upstream connections, as the hub reaches them.

Owns getting the running instance of an assigned server from the supervisor (started on
first use), the connections already seen (a modern one gets its long-lived
``subscriptions/listen`` request when first seen), a plain request/answer exchange with
the client's JSON-RPC error on failure, and what every client of the profile shares
upstream: the log level asked of legacy servers and the roots-changed notification.

It must never tell a client more about a server that failed to start, or a connection
that closed, than the server's name and a reference to the logged cause, and never
start a server for anything but a client's request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gigmcp.core.instances import InstanceKey, new_ref
from gigmcp.core.jsontypes import JSON
from gigmcp.core.views import Assignment, ServerDef
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp import versions as v
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.upstream.types import InstanceUnavailable, PendingRequest, Upstream, UpstreamClosed

log = logging.getLogger(__name__)


class InstanceSource(Protocol):
    async def get(self, key: InstanceKey, server: ServerDef) -> Upstream: ...


class Upstreams:
    def __init__(self, profile_id: int, source: InstanceSource, request_timeout: float) -> None:
        self._profile_id = profile_id
        self._source = source
        self.timeout = request_timeout
        self._seen: dict[str, Upstream] = {}
        self._log_level: str | None = None

    def key(self, server: str) -> InstanceKey:
        return InstanceKey(self._profile_id, server)

    async def get(self, assignment: Assignment) -> Upstream:
        try:
            upstream = await self._source.get(self.key(assignment.server.name), assignment.server)
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
                self.key(assignment.server.name),
                ref,
                exc,
                exc_info=True,
            )
            unavailable = InstanceUnavailable(assignment.server.name, ref)
            raise RpcError(rpc.UPSTREAM_UNAVAILABLE, str(unavailable)) from exc

    def open(self, server: str) -> Upstream | None:
        """The server's connection if one is open now; never starts the server."""
        upstream = self._seen.get(server)
        return upstream if upstream is not None and not upstream.closed else None

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

    def request(self, upstream: Upstream, server: str, method: str, params: JSON) -> PendingRequest:
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
                "%s: server unavailable for %s (ref %s): %s", self.key(server), method, ref, exc
            )
            unavailable = InstanceUnavailable(server, ref)
            raise RpcError(rpc.UPSTREAM_UNAVAILABLE, str(unavailable)) from exc

    async def simple(self, upstream: Upstream, server: str, method: str, params: JSON) -> JSON:
        """One request, its result; any failure as the client's JSON-RPC error."""
        pending = self.request(upstream, server, method, params)
        try:
            response = await pending.wait(self.timeout)
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

    # ------------------------------------------------------------------ shared upstream

    async def set_level(self, params: JSON, assignments: tuple[Assignment, ...]) -> JSON:
        level = params.get("level")
        if level not in v.LOG_LEVELS:
            raise RpcError(rpc.INVALID_PARAMS, f"Invalid params: unknown log level {level!r}")
        # The upstream session is shared by every client of the profile: ask it for the
        # most verbose level anyone wants, and filter per client on the way out.
        if self._log_level is None or v.log_rank(level) < v.log_rank(self._log_level):
            self._log_level = str(level)
            for a in assignments:
                await self._apply_level(a)
        return {}

    async def _apply_level(self, a: Assignment) -> None:
        try:
            upstream = await self.get(a)
            if upstream.era == "legacy" and "logging" in upstream.capabilities:
                await self.simple(
                    upstream, a.server.name, "logging/setLevel", {"level": self._log_level}
                )
        except RpcError as err:
            log.info("logging/setLevel on %s failed: %s", a.server.name, err.message)

    def roots_changed(self) -> None:
        """A legacy client's roots changed: tell every running legacy upstream."""
        for upstream in self._seen.values():
            if not upstream.closed and upstream.era == "legacy":
                upstream.notify("notifications/roots/list_changed", None)
