"""``tools/call``: which server and tool a qualified name reaches, and the audit row.

Owns routing a ``<server>_<tool>`` name to an assignment (a tool the profile does not
enable, or one the pin book hides, is indistinguishable from an unknown one), the
2026-07-28 check of ``Mcp-Param-*`` headers against the arguments the tool's schema
marks ``x-mcp-header``, the gate that fails a call at once when a connected account
of the instance must be reconnected (or its vendor is failing), and one audit event
per call with its outcome and duration.

It must never forward a call to a tool the profile does not enable, and never record an
argument's value (only its size).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gigmcp.core.instances import InstanceKey
from gigmcp.core.jsontypes import JSON
from gigmcp.core.pins import PinBook
from gigmcp.core.views import Assignment, AuditEvent, ProfileView, ServerDef
from gigmcp.errors import AccountError
from gigmcp.mcp import jsonrpc as rpc
from gigmcp.mcp.headers import decode_header_value
from gigmcp.mcp.jsonrpc import RpcError
from gigmcp.router import naming
from gigmcp.router.context import RequestContext
from gigmcp.router.forwarding import Forwarder
from gigmcp.router.listing import Listing
from gigmcp.telemetry import probes

# Asked before a call is forwarded: raises an AccountError when the instance's connected
# accounts cannot give a token now (app.py wires the credential provider's check).
CallGate = Callable[[InstanceKey, ServerDef, int], Awaitable[None]]


class ToolCalls:
    def __init__(
        self,
        view: Callable[[], ProfileView],
        listing: Listing,
        forwarder: Forwarder,
        record: Callable[[AuditEvent], None],
        pins: PinBook | None,
        gate: CallGate | None = None,
    ) -> None:
        self._view = view
        self._listing = listing
        self._forwarder = forwarder
        self._record = record
        self._pins = pins
        self._gate = gate

    def _route_tool(self, qualified: object) -> tuple[Assignment, str]:
        if not isinstance(qualified, str):
            raise RpcError(rpc.INVALID_PARAMS, "Invalid params: name must be a string")
        parts = naming.split_name(qualified)
        assignment = self._view().assignment(parts[0]) if parts else None
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

    async def call(self, ctx: RequestContext, params: JSON) -> JSON:
        assignment, tool = self._route_tool(params.get("name"))
        refusal = await self._account_refusal(assignment)
        if refusal is None and ctx.era == "modern":
            await self._check_param_headers(ctx, assignment, tool, params.get("arguments"))
        started = time.perf_counter()
        outcome = "error"
        try:
            if refusal is not None:
                # A connected account that cannot give a token now: said to the client
                # (and the model) as the call's error, before the server is asked (or
                # started: a remote one cannot be without it), naming the vendor and
                # where to reconnect.
                outcome = "tool_error"
                return {"result": {"content": [{"type": "text", "text": refusal}],
                                   "isError": True}}  # fmt: skip
            result = await self._forwarder.forward(ctx, assignment, "tools/call", params, tool)
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
            elapsed = time.perf_counter() - started
            probes.tool_call(assignment.server.name, tool, outcome, elapsed)
            self._record(
                AuditEvent(
                    action="tools/call",
                    outcome=outcome,
                    user_id=ctx.user_id,
                    profile_id=self._view().id,
                    server=assignment.server.name,
                    tool=tool,
                    duration_ms=elapsed * 1000,
                    arg_bytes=len(rpc.dumps(args)) if args is not None else 0,
                )
            )

    async def _account_refusal(self, assignment: Assignment) -> str | None:
        if self._gate is None:
            return None
        view = self._view()
        try:
            await self._gate(InstanceKey(view.id, assignment.server.name), assignment.server,
                             view.owner_id)  # fmt: skip
        except AccountError as exc:
            return str(exc)
        return None

    async def _check_param_headers(
        self, ctx: RequestContext, assignment: Assignment, tool: str, arguments: Any
    ) -> None:
        """2026-07-28: a server that reads the body must check ``Mcp-Param-*`` headers
        against the arguments of properties marked ``x-mcp-header`` (-32020 if not)."""
        headers: dict[str, bytes] = ctx.extra.get("param_headers", {})
        # The schema says which arguments are mirrored; without it nothing could be
        # checked, so a cold cache (first call, or after a restart) is filled first.
        cached = self._listing.cached(assignment.server.name)
        if cached is None:
            cached = await self._listing.server_tools(assignment)
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
