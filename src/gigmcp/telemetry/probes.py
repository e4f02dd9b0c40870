"""What the hot paths call: one small function per event, for metrics and traces at once.

The endpoint reports refused requests, the router each MCP request (a server span and a
count by method), each request it forwards to an upstream (a client span, current while
the upstream works, whose trace context goes into the forwarded ``_meta``) and each
tool call's outcome; the supervisor instance starts and crashes; the egress proxy each
audit row (a count by decision and reason, a span under the call that caused it); the
token broker each refresh.

Owns turning those events into label values (bounded: ``metrics.py``) and span
attributes. It must never put a client's words in a label, an argument, token, header
value or URL path in a span, and never cost more than a global check per event while
metrics and tracing are both off.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from gigmcp.telemetry import metrics, tracing
from gigmcp.telemetry.tracing import SpanKind


def _method(method: str) -> str:
    return method if method in metrics.METHODS else metrics.OTHER


class Request:
    """One MCP request, from dispatch to answer: its server span (joined to the
    client's ``traceparent``), its count and its latency."""

    __slots__ = ("_era", "_method", "_scope", "_started")

    def __init__(self, method: str, era: str, meta: object) -> None:
        self._method, self._era = _method(method), era
        self._started = time.perf_counter()
        self._scope = None
        if tracing.tracer is not None:
            self._scope = tracing.start(
                self._method, SpanKind.SERVER,
                {"mcp.method.name": self._method, "rpc.system": "jsonrpc", "gigmcp.era": era},
                parent=tracing.client_context(meta),
            )  # fmt: skip

    def end(self, outcome: str, error_code: int | None = None) -> None:
        """``outcome``: ok, error (a JSON-RPC error answer), input_required, cancelled
        or failed (an exception the router did not turn into an answer)."""
        m = metrics.active
        if m is not None:
            m.requests.labels(self._method, self._era, outcome).inc()
            m.request_seconds.labels(self._method).observe(time.perf_counter() - self._started)
        if self._scope is not None:
            if error_code is not None:
                self._scope.span.set_attribute("rpc.jsonrpc.error_code", error_code)
            self._scope.span.set_attribute("gigmcp.outcome", outcome)
            self._scope.end(None if outcome in ("ok", "input_required") else outcome)


def request(method: str, era: str, meta: object) -> Request | None:
    """A request begins; None (nothing to do) while metrics and tracing are off."""
    if metrics.active is None and tracing.tracer is None:
        return None
    return Request(method, era, meta)


def forward(method: str, server: str, tool: str | None, profile_id: int) -> tracing.Scope | None:
    """A request is forwarded to an instance: a client span, current until it ends (the
    forwarded ``_meta`` carries it: :func:`tracing.inject`), to which the instance's
    egress requests are attributed."""
    if tracing.tracer is None:
        return None
    attrs: dict[str, Any] = {"mcp.method.name": method, "gigmcp.server": server,
                             "gigmcp.profile_id": profile_id}  # fmt: skip
    name = f"{method} {server}"
    if tool is not None and method == "tools/call":
        # Only a routed tool (enabled in the profile) gets here: a catalog name.
        name, attrs["gen_ai.tool.name"] = f"{method} {server}_{tool}", tool
    return tracing.start(name, SpanKind.CLIENT, attrs, instance=(profile_id, server))


def tool_call(server: str, tool: str, outcome: str, seconds: float) -> None:
    m = metrics.active
    if m is None:
        return
    s = m.server(server)
    m.tool_calls.labels(s, m.tool(server, tool), outcome).inc()
    m.tool_seconds.labels(s).observe(seconds)


def http_rejected(status: int) -> None:
    m = metrics.active
    if m is not None:
        m.rejections.labels(str(status)).inc()


def instance_started(server: str, ok: bool) -> None:
    m = metrics.active
    if m is not None:
        m.starts.labels(m.server(server), "ok" if ok else "failed").inc()


def instance_crashed(server: str) -> None:
    m = metrics.active
    if m is not None:
        m.crashes.labels(m.server(server)).inc()


def token_refresh(vendor: str, outcome: str) -> None:
    """``outcome``: ok, refused (the vendor refused the refresh token), unavailable
    (the vendor could not be reached), disconnected (while it ran)."""
    m = metrics.active
    if m is not None:
        m.refreshes.labels(m.vendor(vendor), outcome).inc()


class EgressRow(Protocol):
    """What an egress audit row tells (egress/audit.py's ``EgressEvent``)."""

    decision: str
    reason: str
    profile_id: int | None
    server: str | None
    method: str | None
    scheme: str | None
    host: str | None
    port: int | None
    status: int | None
    duration_ms: float | None
    count: int


def egress(row: EgressRow) -> None:
    """An egress request is over (or was refused), as its audit row says: counted by
    decision and reason, and a span, child of the instance's call in flight."""
    m = metrics.active
    if m is not None:
        server = m.server(row.server)
        m.egress.labels(server, row.decision).inc(row.count)
        if row.decision == "denied":
            m.egress_denials.labels(server, m.reason(row.reason)).inc(row.count)
        if row.duration_ms is not None:
            m.egress_seconds.labels(row.decision).observe(row.duration_ms / 1000)
    # The sandboxes' resolver folds its refusals into one row per interval: counted
    # above, but no span (it stands for many queries over seconds).
    if tracing.tracer is None or row.method in (None, "DNS"):
        return
    end = time.time_ns()
    start = end - int((row.duration_ms or 0.0) * 1_000_000)
    attrs: dict[str, Any] = {
        "http.request.method": row.method, "gigmcp.egress.decision": row.decision,
        "gigmcp.egress.reason": row.reason,
    }  # fmt: skip
    # The host is on the server's allowlist (or is what it tried and was refused): the
    # operator's to see. The path is not recorded: some APIs take a key in it.
    for key, value in (("server.address", row.host), ("server.port", row.port),
                       ("url.scheme", row.scheme), ("http.response.status_code", row.status),
                       ("gigmcp.server", row.server)):  # fmt: skip
        if value is not None:
            attrs[key] = value
    instance = (row.profile_id, row.server) if row.profile_id is not None and row.server else None
    tracing.record_span(
        f"egress {row.method}", SpanKind.CLIENT, attrs, start, end, instance,
        error=None if row.decision == "allowed" else row.reason,
    )  # fmt: skip
