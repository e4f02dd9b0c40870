"""OpenTelemetry traces: the tracer and its OTLP exporter, the W3C trace context carried
in MCP's ``params._meta``, and which call an instance's egress belongs to.

Owns setting up the SDK (off unless ``GIG_OTLP_ENDPOINT`` is set: :data:`tracer` is None
and nothing here runs), reading a client's ``traceparent``/``tracestate`` from
``_meta`` (the convention of MCP's extensibility: root keys of ``_meta``), writing the
current span's into the ``_meta`` forwarded to an upstream server, and the table of
spans in flight per instance that lets the egress proxy make its spans children of the
call that caused them.

It must never put an argument, a token, a header value or a URL path in a span (a path
can hold a key: some APIs take one there), never send trace context to a third-party
host in an HTTP header (the proxy adds none: a ``traceparent`` would tell every API a
server calls which requests belong together and when the gateway's users made them),
and never block the event loop (spans are exported in batches from the SDK's thread).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# A traceparent is 55 characters; W3C caps tracestate at 32 members (512 characters is
# what a recipient must at least keep). Longer values are ignored, not parsed.
_MAX_TRACEPARENT = 64
_MAX_TRACESTATE = 512
# Egress spans may link to the calls of an instance when it has several in flight (its
# request cannot be attributed to one of them); a few links say enough.
_MAX_LINKS = 8

_PROPAGATOR = TraceContextTextMapPropagator()

# The gateway's tracer when tracing is on; None (the default) while it is off.
tracer: trace.Tracer | None = None
_provider: Any = None  # the SDK's TracerProvider, for flushing at shutdown
# Per instance (profile id, server name): the spans of calls forwarded to it and not
# yet answered, in the order they began.
_in_flight: dict[tuple[int, str], list[Span]] = {}


def configure(
    endpoint: str, *, service_name: str = "gigmcp", sample_ratio: float = 1.0,
    exporter: Any = None,
) -> None:  # fmt: skip
    """Switch tracing on: spans go in batches to the OTLP/HTTP collector at ``endpoint``
    (its base URL; ``/v1/traces`` is added). A client's sampled flag is followed; a
    trace the gateway starts is kept with probability ``sample_ratio``."""
    global tracer, _provider
    # Imported here: a gateway without tracing never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if exporter is None:
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    # Not installed as the global provider: libraries in the process (the MCP SDK,
    # httpx) would start spans of their own in the gateway's name.
    _provider, tracer = provider, provider.get_tracer("gigmcp")


def shutdown() -> None:
    """Export what is left and stop (blocking: call it from a worker thread)."""
    global tracer, _provider
    provider, _provider, tracer = _provider, None, None
    _in_flight.clear()
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:
            log.exception("tracing: the last spans could not be exported")


def client_context(meta: object) -> otel_context.Context | None:
    """The trace a client's request belongs to, from ``traceparent``/``tracestate`` in
    its ``_meta`` (None: it sent none, or a malformed one, and the request starts a
    trace of its own)."""
    if not isinstance(meta, Mapping):
        return None
    parent = meta.get(TRACEPARENT)
    if not isinstance(parent, str) or len(parent) > _MAX_TRACEPARENT:
        return None
    carrier = {TRACEPARENT: parent}
    state = meta.get(TRACESTATE)
    if isinstance(state, str) and len(state) <= _MAX_TRACESTATE:
        carrier[TRACESTATE] = state
    ctx = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def inject(meta: MutableMapping[str, Any]) -> None:
    """Put the current span's trace context into ``meta`` (an upstream request's
    ``_meta``), replacing the client's: the upstream server's spans become children of
    the gateway's call. Nothing changes when no span is current."""
    if tracer is None:
        return
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(meta)


class Scope:
    """A span made current for the work it times, ended once."""

    __slots__ = ("_instance", "_token", "span")

    def __init__(self, span: Span, instance: tuple[int, str] | None = None) -> None:
        self.span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        self._instance = instance
        if instance is not None:
            _in_flight.setdefault(instance, []).append(span)

    def end(self, error: str | None = None) -> None:
        if self._instance is not None:
            calls = _in_flight.get(self._instance)
            if calls is not None:
                if self.span in calls:
                    calls.remove(self.span)
                if not calls:
                    del _in_flight[self._instance]
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()
        try:
            otel_context.detach(self._token)
        except Exception:
            # Ended from another context than it began in: the span still ends.
            log.debug("tracing: a span ended outside its context")


def start(
    name: str, kind: SpanKind, attributes: Mapping[str, Any],
    parent: otel_context.Context | None = None, instance: tuple[int, str] | None = None,
) -> Scope | None:  # fmt: skip
    """A span, current until :meth:`Scope.end`; ``parent``: the client's context (else
    the current one); ``instance``: the span is a call to that instance, which its
    egress requests are attributed to."""
    if tracer is None:
        return None
    span = tracer.start_span(name, context=parent, kind=kind, attributes=dict(attributes))
    return Scope(span, instance)


def record_span(
    name: str, kind: SpanKind, attributes: Mapping[str, Any], start_ns: int, end_ns: int,
    instance: tuple[int, str] | None, error: str | None = None,
) -> None:  # fmt: skip
    """A span for work that is already over (an egress exchange, from its audit row):
    the child of the instance's call in flight when there is exactly one; otherwise a
    root of its own, linked to the calls it may belong to."""
    if tracer is None:
        return
    calls = _in_flight.get(instance, []) if instance is not None else []
    parent: otel_context.Context | None = otel_context.Context()  # a root by default
    links: list[Link] = []
    if len(calls) == 1:
        parent = trace.set_span_in_context(calls[0], otel_context.Context())
    else:
        links = [Link(s.get_span_context()) for s in calls[-_MAX_LINKS:]]
    span = tracer.start_span(
        name, context=parent, kind=kind, attributes=dict(attributes), links=links,
        start_time=start_ns,
    )  # fmt: skip
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=end_ns)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside one."""
    if tracer is None:
        return None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"


__all__ = ["SpanKind"]
